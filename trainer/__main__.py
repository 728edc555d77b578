import sys

from trainer.worker import main

sys.exit(main())
