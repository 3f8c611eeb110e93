from numbind.cli import main

raise SystemExit(main())
