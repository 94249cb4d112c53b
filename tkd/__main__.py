from tkd.cli import main

raise SystemExit(main())
