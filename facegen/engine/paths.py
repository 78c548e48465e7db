"""Where the repository's shipped files live (assets/, the embedded models and their packs)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "assets"
