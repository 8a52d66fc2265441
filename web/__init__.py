"""The dashboard's templates and static files (shipped in the package as annotate_anyone._resources.web)."""
