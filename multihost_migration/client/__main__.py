import sys

from multihost_migration.client.job import main

sys.exit(main())
