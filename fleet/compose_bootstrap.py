"""Print the compose Envoy's bootstrap (``python -m fleet.compose_bootstrap > envoy/…``).

Rendered from the same ``render_bootstrap`` as ``fleet up``'s, so compose and local Envoys
stay alike; tests/test_compose.py fails when the file on disk drifts from this output.
"""

from __future__ import annotations

import sys
from typing import Any

from ruamel.yaml import YAML

from xds_control.bootstrap import render_bootstrap

HEADER = """\
# Envoy's bootstrap in compose.yaml: ADS to the control plane at control:18000; admin on
# 0.0.0.0:9901 so Prometheus can scrape /stats/prometheus over the compose network (the
# admin port is NOT published to the host). Generated: python -m fleet.compose_bootstrap
"""


def compose_bootstrap() -> dict[str, Any]:
    return render_bootstrap(
        xds_host="control",
        xds_port=18000,
        admin_host="0.0.0.0",
        admin_port=9901,
        node_id="fleet-envoy",
    )


def main() -> None:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 200
    yaml.representer.ignore_aliases = lambda *_: True
    sys.stdout.write(HEADER)
    yaml.dump(compose_bootstrap(), sys.stdout)


if __name__ == "__main__":
    main()
