"""``python -m service``: serve on ``VIDLSTM_HOST``:``VIDLSTM_PORT``."""

from service.server import main

if __name__ == "__main__":
    main()
