from bzzlite.cli.main import main

raise SystemExit(main())
