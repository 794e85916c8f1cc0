from __future__ import annotations

from notifyd.cli import main

raise SystemExit(main())
