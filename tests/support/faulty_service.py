"""``python -m tests.support.faulty_service``: ``python -m service`` with the fault hook.

The same server, settings and drain as the product, with
:func:`tests.support.faults.inject` run in the decode worker before each decode.
The hook is passed in code (``service.server.serve``), never through a setting.
"""

from __future__ import annotations

from service.server import main
from tests.support import faults

if __name__ == "__main__":
    main(decode_hook=faults.inject)
