"""Bad command lines fail at once with a message naming the flag."""

from __future__ import annotations

import pytest

from sidecar.cli import build_parser, default_advertise, grpc_target, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--node"),
        (["--node", "127.0.0.1:8101"], "expected http://HOST:PORT"),
        (["--node", "http://h:99999"], "bad port"),
        (["--node", "http://h:1", "--listen", "nowhere"], "expected HOST:PORT"),
        (["--node", "http://h:1", "--control", "h:x"], "port must be a number"),
        (["--node", "http://h:1", "--poll-interval-ms", "0"], "1..60000"),
        (["--node", "http://h:1", "--name", " "], "--name must not be empty"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults():
    args = build_parser().parse_args(["--node", "http://node-1:8101/ignored"])
    assert args.node == "http://node-1:8101"
    assert args.listen == ("127.0.0.1", 9101)
    assert args.control == ("127.0.0.1", 18000)
    assert default_advertise(args.node) == ("node-1", 8101)
    assert default_advertise("http://h") == ("h", 80)
    assert grpc_target("::1", 18000) == "[::1]:18000"
