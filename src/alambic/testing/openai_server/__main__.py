"""``python -m alambic.testing.openai_server``: serve until SIGTERM/SIGINT (see :mod:`.process`)."""

from alambic.testing.openai_server.process import main

main()
