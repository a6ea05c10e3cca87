from ddbshard.cli import main

raise SystemExit(main())
