"""Render ``nginx.conf.template`` for N replicas; the only way the nginx config is made.

    python deploy/nginx/render.py --upstream 10.0.0.5:8000 --upstream 10.0.0.6:8000 \\
        --listen 0.0.0.0:8080 --out /etc/nginx/vidlstm.conf

The upload cap and the timeouts default to the same ``VIDLSTM_*`` environment
variables the service reads (else to the service's defaults), so one env block
configures the replicas and their load balancer alike. Standard library only:
compose runs this file in a stock Python image, without the project installed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# host:port, host a name or an IPv4 address: nothing that could end a directive.
ADDRESS = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")

# The service's defaults (service/core/settings.py). tests/deploy/test_deploy_files.py
# fails when they drift apart.
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024
DEFAULT_JOBS_MAX_UPLOAD_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_DECODE_TIMEOUT_S = 30.0
DEFAULT_DRAIN_TIMEOUT_S = 30.0
# Uploads up to this size are read in full before they are forwarded, so that
# any failure can be retried on another replica (see the template). 16 MiB holds
# about 25 s of 1080p H.264; beyond it streaming saves nginx the disk and time.
DEFAULT_BUFFER_MAX_BYTES = 16 * 1024 * 1024
# Beyond the decode timeout, what queueing and inference may add before nginx
# gives up on a replica that has not answered.
READ_TIMEOUT_MARGIN_S = 30


class RenderError(ValueError):
    """The template and the values given do not fit together."""


def at_most_regex(limit: int) -> str:
    """A regex matching exactly the decimal strings of the integers ``0..limit``.

    nginx's ``map`` compares strings, not numbers: this is how it tells a
    Content-Length at most ``limit`` from a larger one. Shorter strings are always
    smaller; among strings as long as ``limit``'s, the first digit below
    ``limit``'s decides.
    """
    if limit < 0:
        raise RenderError("limit must be >= 0")
    digits = str(limit)
    width = len(digits)
    alternatives = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
    for i, digit in enumerate(digits):
        if digit == "0":
            continue
        below = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
        rest = width - i - 1
        alternatives.append(digits[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "(?:" + "|".join(alternatives) + ")"


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True, slots=True)
class NginxConfig:
    """What varies between deployments; everything else is in the template."""

    upstreams: Sequence[str]  # host:port of each replica
    listen: str = "0.0.0.0:8080"
    max_upload_bytes: int = field(
        default_factory=lambda: int(
            os.environ.get("VIDLSTM_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)
        )
    )
    jobs_max_upload_bytes: int = field(
        default_factory=lambda: int(
            os.environ.get("VIDLSTM_JOBS_MAX_UPLOAD_BYTES", DEFAULT_JOBS_MAX_UPLOAD_BYTES)
        )
    )
    decode_timeout_s: float = field(
        default_factory=lambda: _env_float("VIDLSTM_DECODE_TIMEOUT_S", DEFAULT_DECODE_TIMEOUT_S)
    )
    drain_timeout_s: float = field(
        default_factory=lambda: _env_float("VIDLSTM_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_TIMEOUT_S)
    )
    buffer_max_bytes: int = DEFAULT_BUFFER_MAX_BYTES
    runtime_dir: str = "/tmp/nginx"  # pid file and temp files; must be writable
    access_log: str = "/dev/stdout"
    worker_processes: str = "auto"
    max_fails: int = 3
    fail_timeout_s: int = 10

    def values(self) -> dict[str, str]:
        """The template's placeholders, filled."""
        if not self.upstreams:
            raise RenderError("at least one upstream is needed")
        for address in [*self.upstreams, self.listen]:
            if not ADDRESS.match(address):
                raise RenderError(f"not a host:port address: {address!r}")
        if self.max_upload_bytes < 1 or self.buffer_max_bytes < 0:
            raise RenderError("need max_upload_bytes >= 1 and buffer_max_bytes >= 0")
        servers = "\n".join(
            f"        server {address} max_fails={self.max_fails} "
            f"fail_timeout={self.fail_timeout_s}s;"
            for address in self.upstreams
        )
        return {
            "WORKER_PROCESSES": self.worker_processes,
            "RUNTIME_DIR": self.runtime_dir,
            "ACCESS_LOG": self.access_log,
            "UPSTREAM_SERVERS": servers,
            "LISTEN": self.listen,
            "MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "JOBS_MAX_UPLOAD_BYTES": str(self.jobs_max_upload_bytes),
            "BUFFER_MAX_BYTES": str(self.buffer_max_bytes),
            "BUFFERED_LENGTH_REGEX": at_most_regex(self.buffer_max_bytes),
            "DECODE_TIMEOUT_S": f"{self.decode_timeout_s:g}",
            "PROXY_READ_TIMEOUT_S": str(math.ceil(self.decode_timeout_s) + READ_TIMEOUT_MARGIN_S),
            "DRAIN_TIMEOUT_S": str(math.ceil(self.drain_timeout_s)),
        }


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder of ``template``; unknown or unused names are errors."""
    used = set(PLACEHOLDER.findall(template))
    missing, unused = used - values.keys(), values.keys() - used
    if missing or unused:
        raise RenderError(f"placeholders missing {sorted(missing)}, unused {sorted(unused)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render(config: NginxConfig, template: Path = TEMPLATE) -> str:
    """The nginx.conf text for ``config``."""
    return substitute(template.read_text(encoding="utf-8"), config.values())


def write_config(config: NginxConfig, out: Path) -> Path:
    """Render ``config`` to ``out`` (atomically, so nginx never reads half a file)."""
    text = render(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = NginxConfig(upstreams=("localhost:8000",))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", action="append", required=True, help="replica host:port")
    parser.add_argument("--listen", default=defaults.listen)
    parser.add_argument("--max-upload-bytes", type=int, default=defaults.max_upload_bytes)
    parser.add_argument("--decode-timeout-s", type=float, default=defaults.decode_timeout_s)
    parser.add_argument("--drain-timeout-s", type=float, default=defaults.drain_timeout_s)
    parser.add_argument("--buffer-max-bytes", type=int, default=defaults.buffer_max_bytes)
    parser.add_argument("--runtime-dir", default=defaults.runtime_dir)
    parser.add_argument("--access-log", default=defaults.access_log)
    parser.add_argument("--worker-processes", default=defaults.worker_processes)
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    config = NginxConfig(
        upstreams=tuple(args.upstream),
        listen=args.listen,
        max_upload_bytes=args.max_upload_bytes,
        decode_timeout_s=args.decode_timeout_s,
        drain_timeout_s=args.drain_timeout_s,
        buffer_max_bytes=args.buffer_max_bytes,
        runtime_dir=args.runtime_dir,
        access_log=args.access_log,
        worker_processes=args.worker_processes,
    )
    try:
        if args.out is None:
            sys.stdout.write(render(config))
        else:
            write_config(config, args.out)
    except RenderError as err:
        sys.stderr.write(f"render.py: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
