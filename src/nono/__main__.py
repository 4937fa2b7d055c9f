import sys

from nono.cli.main import main

sys.exit(main())
