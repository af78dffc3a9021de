"""`python3 infra/kafka/launcher.py up|down|status`: the local broker, usable before the package
is installed (CI calls it first). The launcher itself is `streams.kafka.launcher` (stdlib only)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.kafka.launcher import main

if __name__ == "__main__":
    sys.exit(main())
