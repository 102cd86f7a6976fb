from bzzlite.cli import main

raise SystemExit(main())
