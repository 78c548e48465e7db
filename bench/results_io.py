"""Writing a bench's results: one JSON file (parents created, indent 1, a final newline), announced."""

import json
from pathlib import Path


def write_json(path, obj, default=None) -> Path:
    """Write `obj` as JSON to `path` (folders created) and print where; -> the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=default) + "\n")
    print(f"wrote {path}")
    return path
