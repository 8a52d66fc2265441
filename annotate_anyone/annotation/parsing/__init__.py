"""Human parsing into the 18 ATR labels: a geometric offline default and a Segformer backend."""

from annotate_anyone.annotation.parsing.base import Parser, PersonView, decode_map, encode_map, make_parser

__all__ = ["Parser", "PersonView", "decode_map", "encode_map", "make_parser"]
