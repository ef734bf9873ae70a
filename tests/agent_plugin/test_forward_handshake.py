"""Shared-key handshake: digests, HELO/PING/PONG, success and failure paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from logsieve.agent_plugin.forward import (
    ClientHandshake,
    ConnectionState,
    HandshakeFailed,
    HandshakeSucceeded,
    RecordBatch,
    SecurityConfig,
    ServerConnection,
    ServerHandshake,
    password_digest,
    ping_digest,
    pong_digest,
)
from logsieve.agent_plugin.forward.handshake_client import parse_helo
from logsieve.errors import ConfigError, HandshakeError, ProtocolError

from .wire import FWD_LEGACY, packb

# FORWARD.md §2 self-consistency vector.
SALT = b"0123456789abcdef0123456789abcdef"
NONCE = bytes(range(16))
AUTH = bytes(range(16, 32))
KEY = "secret"
CLIENT = b"client.example"
SERVER = "server.example"
PING_DIGEST = (
    "3a680037d3979b4f789647cd22e7e55f2197791eb498799823c424e2213124ed"
    "63938d1c422f50e08ec02957ef44df338e46c77e8ea164b0dde6d64e171b30df"
)
PONG_DIGEST = (
    "3389a63bef56054281d75fb7b05965b0d1b1ea9eba25b4594ed8e06a02e725af"
    "1fbf401cdbe697423c388ac1948566570a6f592284a536370ca36a5ccf88cbbd"
)
PW_DIGEST = (
    "175443d1726b2836999b8b7b54c1fcf0a2ec1071f20fbec9f6e0a7594cf70f20"
    "8e7ed315db82d7e4f45981d04990e9b9b46ea8f69444a5cf5e25601d72aa83e5"
)


def fixed_random(*values: bytes) -> Callable[[int], bytes]:
    """random_bytes stand-in returning the given values in order."""
    queue = list(values)

    def take(n: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == n
        return value

    return take


def config(**users: str) -> SecurityConfig:
    return SecurityConfig(self_hostname=SERVER, shared_key=KEY, users=users)


def ping_frame(
    *,
    salt: bytes = SALT,
    host: bytes = CLIENT,
    nonce: bytes = NONCE,
    key: str = KEY,
    user: bytes = b"",
    pw_digest: bytes = b"",
) -> bytes:
    """A PING with every element packed as str (raw), as Fluent Bit sends it."""
    digest = ping_digest(salt, host, nonce, key).encode()
    return bytes(msgpack.packb([b"PING", host, salt, digest, user, pw_digest], use_bin_type=False))


def unpack_str(data: bytes) -> Any:
    """Unpack with raw=False: any bin would come back as bytes, any str as str."""
    return msgpack.unpackb(data, raw=False)


def connect(cfg: SecurityConfig, auth: bytes = b"") -> tuple[ServerConnection, bytes]:
    randoms = (NONCE, auth) if cfg.user_auth else (NONCE,)
    conn = ServerConnection(security=cfg, random_bytes=fixed_random(*randoms))
    return conn, conn.initiate()


def run(conn: ServerConnection, data: bytes) -> list[Any]:
    conn.feed(data)
    return list(conn.events())


# -- Digests ---------------------------------------------------------------------------------


def test_digest_vectors_from_forward_md() -> None:
    assert ping_digest(SALT, CLIENT, NONCE, KEY) == PING_DIGEST
    assert pong_digest(SALT, SERVER, NONCE, KEY) == PONG_DIGEST
    assert password_digest(AUTH, "alice", "pw") == PW_DIGEST
    assert len(PING_DIGEST) == 128 and PING_DIGEST.lower() == PING_DIGEST


# -- HELO --------------------------------------------------------------------------------------


def test_helo_without_users_has_bin_nonce_empty_str_auth_and_keepalive() -> None:
    _, helo = connect(config())
    assert helo == packb(["HELO", {"nonce": NONCE, "auth": "", "keepalive": True}])
    assert unpack_str(helo) == ["HELO", {"nonce": NONCE, "auth": "", "keepalive": True}]


def test_helo_with_users_carries_the_auth_salt() -> None:
    _, helo = connect(config(alice="pw"), AUTH)
    assert unpack_str(helo)[1]["auth"] == AUTH


def test_no_security_means_no_helo_and_straight_to_transport() -> None:
    conn = ServerConnection()
    assert conn.initiate() == b""
    assert conn.state is ConnectionState.TRANSPORT


# -- Server success paths ---------------------------------------------------------------------


def test_valid_ping_gets_an_all_str_pong_with_the_expected_digest() -> None:
    conn, _ = connect(config())
    (result,) = run(conn, ping_frame())
    assert isinstance(result, HandshakeSucceeded)
    assert result.client_hostname == CLIENT
    assert result.reply == packb(["PONG", True, "", SERVER, PONG_DIGEST])
    pong = unpack_str(result.reply)
    assert pong == ["PONG", True, "", SERVER, PONG_DIGEST]
    assert [type(x) for x in pong] == [str, bool, str, str, str]
    assert len(pong[4]) == 128
    assert conn.state is ConnectionState.TRANSPORT


def test_fluent_bit_style_non_utf8_salt_and_hostname_are_hashed_raw() -> None:
    salt = bytes(range(0xF0, 0x100))  # 16 random-looking bytes packed as str
    host = b"h\xffst"
    conn, _ = connect(config())
    frame = ping_frame(salt=salt, host=host)
    # array, "PING", the host: then the salt header, a fixstr of 16 (str, not bin).
    assert frame[1 + 5 + 1 + len(host)] == 0xB0
    (result,) = run(conn, frame)
    assert isinstance(result, HandshakeSucceeded)
    assert unpack_str(result.reply)[4] == pong_digest(salt, SERVER, NONCE, KEY)


def test_non_utf8_nonce_is_used_raw() -> None:
    nonce = bytes(range(0x80, 0x90))
    conn = ServerConnection(security=config(), random_bytes=fixed_random(nonce))
    conn.initiate()
    (result,) = run(conn, ping_frame(nonce=nonce))
    assert isinstance(result, HandshakeSucceeded)


def test_bin_salt_is_accepted_too() -> None:
    digest = ping_digest(SALT, CLIENT, NONCE, KEY)
    frame = packb(["PING", CLIENT.decode(), SALT, digest, "", ""])  # salt as bin
    conn, _ = connect(config())
    assert isinstance(run(conn, frame)[0], HandshakeSucceeded)


def test_user_auth_success() -> None:
    conn, _ = connect(config(alice="pw", bob="other"), AUTH)
    (result,) = run(conn, ping_frame(user=b"alice", pw_digest=PW_DIGEST.encode()))
    assert isinstance(result, HandshakeSucceeded)
    assert result.username == b"alice"


def test_data_in_the_same_read_as_the_ping_is_decoded_after_it() -> None:
    conn, _ = connect(config())
    events = run(conn, ping_frame() + FWD_LEGACY + FWD_LEGACY)
    assert isinstance(events[0], HandshakeSucceeded)
    assert [type(e) for e in events[1:]] == [RecordBatch, RecordBatch]


# -- Server failure paths ---------------------------------------------------------------------


def _failed(events: list[Any], reason: str) -> HandshakeFailed:
    (result,) = events
    assert isinstance(result, HandshakeFailed)
    pong = unpack_str(result.reply)
    assert pong == ["PONG", False, reason, "", ""]
    assert isinstance(result.error, HandshakeError)
    assert isinstance(result.error, ProtocolError)
    return result


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "wrong"},
        {"nonce": bytes(16)},  # a digest made for another connection's nonce
        {"salt": b"other-salt"},  # digest over one salt, a different salt sent
    ],
    ids=["key", "nonce", "salt"],
)
def test_wrong_key_nonce_or_salt_fails_with_shared_key_mismatch(kwargs: dict[str, Any]) -> None:
    conn, _ = connect(config())
    frame = ping_frame(**kwargs)
    if "salt" in kwargs:  # send SALT but with the digest computed over the other salt
        digest = ping_digest(kwargs["salt"], CLIENT, NONCE, KEY).encode()
        frame = bytes(msgpack.packb([b"PING", CLIENT, SALT, digest, b"", b""], use_bin_type=False))
    result = _failed(run(conn, frame), "shared_key mismatch")
    assert "client.example" in str(result.error)
    assert conn.state is ConnectionState.CLOSED
    with pytest.raises(ProtocolError, match="connection already closed: shared_key mismatch"):
        conn.feed(FWD_LEGACY)


def test_bad_digest_value_fails() -> None:
    conn, _ = connect(config())
    frame = packb(["PING", "c", "s", "0" * 128, "", ""])
    _failed(run(conn, frame), "shared_key mismatch")


@pytest.mark.parametrize(
    ("user", "pw_digest"),
    [
        (b"alice", password_digest(AUTH, "alice", "wrong").encode()),
        (b"mallory", password_digest(AUTH, "mallory", "pw").encode()),
        (b"", b""),
        (b"alice", password_digest(bytes(16), "alice", "pw").encode()),  # stale auth salt
    ],
    ids=["password", "unknown-user", "no-user", "auth-salt"],
)
def test_user_auth_failures(user: bytes, pw_digest: bytes) -> None:
    conn, _ = connect(config(alice="pw"), AUTH)
    _failed(run(conn, ping_frame(user=user, pw_digest=pw_digest)), "username/password mismatch")


@pytest.mark.parametrize(
    "frame",
    [
        FWD_LEGACY,  # client without a shared key sends data straight away
        b"\xc0",
        packb(["PING", "c", "s", "d", ""]),  # 5 elements
        packb(["PING", "c", "s", "d", "", "", ""]),
        packb(["PING", "c", 5, "d", "", ""]),
        packb(["PONG", "c", "s", "d", "", ""]),
    ],
    ids=["data", "nil", "short", "long", "int-salt", "not-ping"],
)
def test_anything_but_a_ping_fails_the_handshake(frame: bytes) -> None:
    conn, _ = connect(config())
    result = _failed(run(conn, frame), "invalid ping message")
    assert "invalid ping message" in str(result.error)
    assert conn.state is ConnectionState.CLOSED


def test_failed_handshake_stops_decoding_what_follows() -> None:
    conn, _ = connect(config())
    events = run(conn, ping_frame(key="wrong") + FWD_LEGACY)
    assert [type(e) for e in events] == [HandshakeFailed]


def test_server_handshake_accepts_one_ping_only() -> None:
    hs = ServerHandshake(config(), random_bytes=fixed_random(NONCE))
    ping = msgpack.unpackb(ping_frame(), raw=True)
    assert isinstance(hs.receive_ping(ping), HandshakeSucceeded)
    with pytest.raises(ProtocolError, match="second PING"):
        hs.receive_ping(ping)


def test_security_config_validation() -> None:
    with pytest.raises(ConfigError, match="self_hostname"):
        SecurityConfig(self_hostname="", shared_key="k")
    with pytest.raises(ConfigError, match=r"security\.users"):
        SecurityConfig(self_hostname="s", shared_key="k", users={"": "pw"})
    cfg = SecurityConfig(self_hostname="s", shared_key="", users={"a": "b"})
    assert cfg.user_auth
    users: Any = cfg.users  # frozen: the mapping itself is read-only too
    with pytest.raises(TypeError):
        users["x"] = "y"


# -- Client side -------------------------------------------------------------------------------


def test_client_and_server_complete_a_handshake_with_user_auth() -> None:
    conn, helo = connect(config(alice="pw"), AUTH)
    client = ClientHandshake("client.example", KEY, "alice", "pw")
    ping = client.receive_helo(msgpack.unpackb(helo, raw=True))
    # Every PING element is a msgpack str (Fluent Bit's in_forward demands it).
    assert all(isinstance(x, str) for x in unpack_str(ping))
    assert len(client.salt) == 32
    (result,) = run(conn, ping)
    assert isinstance(result, HandshakeSucceeded)
    pong = client.receive_pong(msgpack.unpackb(result.reply, raw=True))
    assert pong.server_hostname == SERVER.encode()


def test_client_ping_matches_the_vector() -> None:
    client = ClientHandshake("client.example", KEY, salt=SALT)
    helo = msgpack.unpackb(packb(["HELO", {"nonce": NONCE, "auth": ""}]), raw=True)
    ping = unpack_str(client.receive_helo(helo))
    assert ping == ["PING", "client.example", SALT.decode(), PING_DIGEST, "", ""]


def test_client_parses_a_fluent_bit_helo_with_str_nonce_and_no_keepalive() -> None:
    nonce = bytes(range(0xE0, 0xF0))
    frame = b"\x92\xa4HELO\x82\xa5nonce\xb0" + nonce + b"\xa4auth\xb0" + AUTH
    helo = parse_helo(msgpack.unpackb(frame, raw=True))
    assert (helo.nonce, helo.auth, helo.keepalive) == (nonce, AUTH, True)


@pytest.mark.parametrize(
    ("pong", "message"),
    [
        (["PONG", False, "shared_key mismatch", "", ""], "refused.*shared_key mismatch"),
        (["PONG", True, "", "client.example", "x"], "equals ours"),
        (["PONG", True, "", SERVER, "0" * 128], "digest .* does not match"),
        (["PONG", True, ""], "5-element PONG"),
        (["PONG", 1, "", SERVER, PONG_DIGEST], "must be a bool"),
    ],
)
def test_client_rejects_bad_pongs(pong: list[Any], message: str) -> None:
    client = ClientHandshake("client.example", KEY, salt=SALT)
    client.receive_helo([b"HELO", {b"nonce": NONCE, b"auth": b""}])
    with pytest.raises(HandshakeError, match=message):
        client.receive_pong(msgpack.unpackb(packb(pong), raw=True))


def test_client_accepts_the_vector_pong_and_enforces_order() -> None:
    client = ClientHandshake("client.example", KEY, salt=SALT)
    with pytest.raises(ProtocolError, match="before HELO"):
        client.receive_pong([b"PONG"])
    client.receive_helo([b"HELO", {b"nonce": NONCE, b"auth": b""}])
    good = msgpack.unpackb(packb(["PONG", True, "", SERVER, PONG_DIGEST]), raw=True)
    assert client.receive_pong(good).auth_result is True
