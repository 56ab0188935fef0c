import sys

from synthetic.data import main

sys.exit(main())
