// The dashboard's little bit of JavaScript: live job progress and the image overlay.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// ----------------------------------------------------------------------------------- job progress
async function pollJob(section) {
  const id = section.dataset.jobId;
  const bar = document.getElementById("job-progress");
  const status = document.getElementById("job-status");
  const count = document.getElementById("job-count");
  const failed = document.getElementById("job-failed");
  const error = document.getElementById("job-error");
  for (;;) {
    let job;
    try {
      const res = await fetch(`/jobs/${id}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!res.ok) throw new Error(String(res.status));
      job = await res.json();
    } catch (e) {
      await new Promise((r) => setTimeout(r, 3000));
      continue;
    }
    bar.value = job.progress;
    bar.dataset.progress = String(job.progress);
    status.textContent = job.status;
    status.className = `badge ${job.status}`;
    count.textContent = `${job.done}/${job.total}`;
    failed.textContent = String(job.failed);
    section.dataset.status = job.status;
    if (job.error) { error.textContent = job.error; error.hidden = false; }
    if (["succeeded", "failed", "cancelled"].includes(job.status)) {
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
      return;
    }
    await new Promise((r) => setTimeout(r, 700));
  }
}

// -------------------------------------------------------------------------------------- overlays
// ATR labels (0 background, 1 hat, 2 hair, 3 sunglasses, 4 upper-clothes, 5 skirt, 6 pants, 7 dress, 8 belt,
// 9 left-shoe, 10 right-shoe, 11 face, 12 left-leg, 13 right-leg, 14 left-arm, 15 right-arm, 16 bag, 17 scarf)
const PALETTE = [
  null, [128, 0, 0], [254, 0, 0], [0, 85, 0], [170, 0, 51], [254, 85, 0], [0, 0, 85], [0, 119, 221],
  [85, 85, 0], [0, 85, 85], [85, 51, 0], [52, 86, 128], [0, 128, 0], [0, 0, 254], [51, 170, 221],
  [0, 254, 254], [85, 254, 170], [170, 254, 85],
];
// MediaPipe pose (33 points): a few bones are enough to read the pose
const BONES = [[11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [11, 23], [12, 24], [23, 24], [23, 25], [25, 27],
  [24, 26], [26, 28], [0, 11], [0, 12]];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawVector(svg, persons) {
  svg.replaceChildren();
  const boxes = document.getElementById("show-box").checked;
  const kps = document.getElementById("show-kp").checked;
  for (const p of persons) {
    if (boxes && p.box && p.box.length === 4) {
      const [x0, y0, x1, y1] = p.box;
      svg.append(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "box", "data-person": p.index }));
    }
    if (kps && p.keypoints.length) {
      const visible = (k) => k && (k.length < 3 || k[2] >= 0.3);
      for (const [a, b] of BONES) {
        const ka = p.keypoints[a], kb = p.keypoints[b];
        if (visible(ka) && visible(kb)) svg.append(svgEl("line", { x1: ka[0], y1: ka[1], x2: kb[0], y2: kb[1], class: "bone" }));
      }
      const r = Math.max(2, (p.box && p.box.length === 4 ? (p.box[2] - p.box[0]) : 200) / 80);
      for (const k of p.keypoints) if (visible(k)) svg.append(svgEl("circle", { cx: k[0], cy: k[1], r, class: "kp" }));
    }
  }
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = url;
  });
}

async function drawParsing(canvas, photo, persons) {
  canvas.width = photo.naturalWidth;
  canvas.height = photo.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const p of persons) {
    if (!p.parsing) continue;
    let map;
    try { map = await loadImage(p.parsing); } catch (e) { continue; }
    const off = document.createElement("canvas");
    off.width = canvas.width; off.height = canvas.height;
    const octx = off.getContext("2d");
    octx.imageSmoothingEnabled = false;
    octx.drawImage(map, 0, 0, off.width, off.height);
    const data = octx.getImageData(0, 0, off.width, off.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const color = PALETTE[px[i]];
      if (!color) { px[i + 3] = 0; continue; }
      px[i] = color[0]; px[i + 1] = color[1]; px[i + 2] = color[2]; px[i + 3] = 255;
    }
    octx.putImageData(data, 0, 0);
    ctx.drawImage(off, 0, 0);
  }
  canvas.dataset.drawn = "1";
}

function setupOverlay() {
  const photo = document.getElementById("photo");
  const svg = document.getElementById("overlay");
  const canvas = document.getElementById("parsing-layer");
  const persons = JSON.parse(document.getElementById("overlay-data").textContent);
  const alpha = document.getElementById("parsing-alpha");
  const showParsing = document.getElementById("show-parsing");
  const applyAlpha = () => { canvas.style.opacity = showParsing.checked ? alpha.value : 0; };
  const start = async () => {
    drawVector(svg, persons);
    svg.dataset.drawn = String(svg.childElementCount);
    applyAlpha();
    await drawParsing(canvas, photo, persons);
  };
  if (photo.complete && photo.naturalWidth) start(); else photo.addEventListener("load", start, { once: true });
  for (const id of ["show-box", "show-kp"]) document.getElementById(id).addEventListener("change", () => drawVector(svg, persons));
  alpha.addEventListener("input", applyAlpha);
  showParsing.addEventListener("change", applyAlpha);
}

document.addEventListener("DOMContentLoaded", () => {
  const job = document.getElementById("job");
  if (job && ["queued", "running"].includes(job.dataset.status)) pollJob(job);
  if (document.getElementById("overlay-data")) setupOverlay();
});
