"""Reports: the on-disk journal every result goes to first, and one module per
output format, all written through aiofiles, atomically."""
