"""Masking: each default rule, rule order, real lines, hostile input, digit folding."""

from __future__ import annotations

import csv
import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.config import DEFAULT_MASK_RULES, MaskingConfig, MaskRule
from logsieve.errors import ConfigError
from logsieve.logs.masking import TRUNCATED_TOKEN, Masker, digit_folding

MASK = Masker(MaskingConfig())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # TS
        ("at 2008-11-09T20:35:18.123+01:00 ok", "at <TS> ok"),
        ("at 2008-11-09 20:35:18,5Z ok", "at <TS> ok"),
        ("R02 2005-06-03-15.42.50.675872 R02", "R02 <TS> R02"),
        ("day 2005.06.03 dir 2005.09.20-18.06.05", "day <TS> dir <TS>"),
        ("dn228 Nov 9 12:01:01 dn228/dn228", "dn228 <TS> dn228/dn228"),
        ("delay=00:00:07, xdelay=12:01:01.5", "delay=<TS>, xdelay=<TS>"),
        # BLK
        ("Receiving block blk_-1608999687919862906 ok", "Receiving block <BLK> ok"),
        ("Deleting blk_38865049064139660.", "Deleting <BLK>."),
        # UUID
        ("job 123e4567-e89b-12d3-a456-426614174000 done", "job <UUID> done"),
        # MAC and long hex byte ids
        ("DHCPDISCOVER from 00:11:43:e3:ba:c3 via eth1", "DHCPDISCOVER from <MAC> via eth1"),
        ("chip FF:F2:9F:16:E2:23:00:0D:60:E9:1D:DC ip", "chip <MAC> ip"),
        ("nic 00-11-43-E3-BA-C3 up", "nic <MAC> up"),
        # IPv4, with and without port, sentence full stop
        ("src: /10.250.19.102:54106 dest: /10.250.19.102:50010", "src: /<IP> dest: /<IP>"),
        ("unknown lease 10.100.4.251.", "unknown lease <IP>."),
        ("from=10.100.4.251", "from=<IP>"),
        # IPv6
        ("peer fe80::1ff:fe23:4567:890a%eth0 up", "peer <IP>%eth0 up"),
        ("peer [2001:db8::1]:8080 up", "peer <IP> up"),
        ("lo ::1 up", "lo <IP> up"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334 x", "full <IP> x"),
        # HEX
        ("dcr 0x02ec and 0XFF", "dcr <HEX> and <HEX>"),
        ("ecid 203231503833343000000000594c31304b34323934303257,", "ecid <HEX>,"),
        ("sha deadbeef12 end", "sha <HEX> end"),
        # PATH
        ("loading /g/g24/buber/taddriver.32.exe: too big", "loading <PATH>: too big"),
        ("chdir(/p/gb1//2005.09.20-18.06.05) failed", "chdir(<PATH>/<TS>) failed"),  # TS first
        ("dir /var/log/ ok", "dir <PATH> ok"),
        # NUM
        ("PacketResponder 1 for block", "PacketResponder <NUM> for block"),
        ("size -12 and +3.5 of 7", "size <NUM> and <NUM> of <NUM>"),
        ("generating core.4505", "generating core.<NUM>"),
        ("illegal instruction......0", "illegal instruction......<NUM>"),
        ("L2 cache: 2048K, 16KB, 4GiB", "L2 cache: <NUM>, <NUM>, <NUM>"),
        ("pid=16563, slept 5.", "pid=<NUM>, slept <NUM>."),
    ],
)
def test_default_rules_on_examples(line: str, expected: str) -> None:
    assert MASK.mask(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "R02-M1-N0-C:J12-U11",  # BGL node location: an identity, not a number
        "eth1 dn228 Thunderbird_A8 i8042",
        "version 1.2.3 of x",  # versions stay (Drain wildcards them if they vary)
        "1.2.3.4.5",  # not an IPv4 address
        "std::vector and a :: b",  # no bare '::' IPv6
        "colour VGA+ 80x25",
        "cafebabe",  # 8 hex letters without a digit is a word
        "",
    ],
)
def test_default_rules_leave_non_variables(line: str) -> None:
    assert MASK.mask(line) == line


def test_rule_order_most_specific_first() -> None:
    # A block id is not a number, an IP:port is not a path, a MAC is not IPv6.
    assert MASK.mask("blk_-42") == "<BLK>"
    assert MASK.mask("/10.0.0.1:80") == "/<IP>"
    assert MASK.mask("aa:bb:cc:dd:ee:ff") == "<MAC>"
    names = [r.name for r in DEFAULT_MASK_RULES]
    assert names.index("BLK") < names.index("NUM")
    assert names.index("MAC") < max(i for i, n in enumerate(names) if n == "IP")


def test_masking_is_sequential_like_drain3() -> None:
    # Each rule sees the previous rules' output: the second rule rewrites the first's token.
    masker = Masker(MaskingConfig(rules=(MaskRule("A", r"x"), MaskRule("B", r"<A>"))))
    assert masker.mask("x y x") == "<B> y <B>"


def _structured(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.data
def test_real_hdfs_contents_keep_no_digits(shared_data: Path) -> None:
    rows = _structured(shared_data / "hdfs/raw/HDFS_2k.log_structured.csv")
    masked = {MASK.mask(r["Content"]) for r in rows}
    assert not [m for m in masked if re.search(r"\d", m)]
    assert "PacketResponder <NUM> for block <BLK> terminating" in masked
    assert "Receiving block <BLK> src: /<IP> dest: /<IP>" in masked


@pytest.mark.data
@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        (
            "bgl/raw/BGL_2k.log_structured.csv",
            "Ido chip status changed: FF:F2:9F:16:E2:23:00:0D:60:E9:1D:DC ip=10.0.0.151 v=9 "
            "t=4 status=M Fri Jul 01 08:16:53 PDT 2005",
            "Ido chip status changed: <MAC> ip=<IP> v=<NUM> t=<NUM> status=M Fri <TS> PDT <NUM>",
        ),
        (
            "bgl/raw/BGL_2k.log_structured.csv",
            "1 torus receiver x+ input pipe error(s) (dcr 0x02ec) detected and corrected",
            "<NUM> torus receiver x+ input pipe error(s) (dcr <HEX>) detected and corrected",
        ),
        (
            "bgl/raw/BGL_2k.log_structured.csv",
            "ciod: Error reading message prefix on CioStream socket to 172.16.96.116:41554, "
            "Connection timed out",
            "ciod: Error reading message prefix on CioStream socket to <IP>, Connection timed out",
        ),
        (
            "thunderbird/raw/Thunderbird_2k.log_structured.csv",
            "START: tftp pid=16563 from=10.100.4.251",
            "START: tftp pid=<NUM> from=<IP>",
        ),
        (
            "thunderbird/raw/Thunderbird_2k.log_structured.csv",
            "Reading included configuration file: /etc/xinetd.d/chargen [file=/etc/xinetd.conf] "
            "[line=15]",
            "Reading included configuration file: <PATH> [file=<PATH>] [line=<NUM>]",
        ),
    ],
)
def test_real_bgl_thunderbird_lines(
    shared_data: Path, path: str, content: str, expected: str
) -> None:
    contents = {r["Content"] for r in _structured(shared_data / path)}
    assert content in contents  # the example is a real line of that file
    assert MASK.mask(content) == expected


@pytest.mark.data
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "hdfs/raw/HDFS_2k.log",
            "<NUM> <NUM> <NUM> INFO dfs.DataNode$PacketResponder: PacketResponder <NUM> for "
            "block <BLK> terminating",
        ),
        (
            "bgl/raw/BGL_2k.log",
            "- <NUM> <TS> R02-M1-N0-C:J12-U11 <TS> R02-M1-N0-C:J12-U11 RAS KERNEL INFO "
            "instruction cache parity error corrected",
        ),
        (
            "thunderbird/raw/Thunderbird_2k.log",
            "- <NUM> <TS> dn228 <TS> dn228/dn228 crond(pam_unix)[<NUM>]: session closed for "
            "user root",
        ),
    ],
)
def test_real_whole_raw_lines(shared_data: Path, path: str, expected: str) -> None:
    with (shared_data / path).open(encoding="utf-8", newline="") as f:
        first = f.readline().rstrip("\r\n")
    assert MASK.mask(first) == expected


# --- hostile and odd input -------------------------------------------------------


@pytest.mark.parametrize("line", ["", " ", "\t \t", "\r\n", "\x00\x01\x1b[31m", "no digits here"])
def test_empty_whitespace_and_control_lines_pass_through(line: str) -> None:
    assert MASK.mask(line) == line


def test_non_utf8_decoded_text_masks_without_error() -> None:
    raw = b"recv \xff\xfe from 10.0.0.1:80 len 42 \xc3"
    replaced = raw.decode("utf-8", "replace")
    escaped = raw.decode("utf-8", "surrogateescape")
    assert MASK.mask(replaced) == "recv \ufffd\ufffd from <IP> len <NUM> \ufffd"
    assert MASK.mask(escaped) == "recv \udcff\udcfe from <IP> len <NUM> \udcc3"


def test_long_line_is_truncated_and_counted() -> None:
    masker = Masker(MaskingConfig(max_line_chars=64))
    short = "x " * 10
    assert masker.mask(short) == short and masker.truncated == 0
    out = masker.mask("blk_1 " + "y" * 100)
    assert out == "<BLK> " + "y" * 58 + " " + TRUNCATED_TOKEN
    assert masker.truncated == 1


def test_one_megabyte_line_is_cheap() -> None:
    line = ("blk_-1 10.0.0.1:80 /a/b 0x1f 12 " * 40_000)[:1_000_000]
    start = time.perf_counter()
    out = MASK.mask(line)
    assert time.perf_counter() - start < 0.5
    assert out.endswith(" " + TRUNCATED_TOKEN)
    assert len(out) < 8192 + 16


@pytest.mark.parametrize(
    "line",
    ["1" * 200_000 + "x", "1." * 100_000, "a1:" * 70_000, "/" * 200_000 + "a", "::" * 100_000],
)
def test_rules_are_linear_without_the_length_cap(line: str) -> None:
    # Shapes that would make a backtracking-prone pattern quadratic or worse.
    masker = Masker(MaskingConfig(max_line_chars=None))
    start = time.perf_counter()
    masker.mask(line)
    assert time.perf_counter() - start < 1.0


def test_masking_config_validation_and_json_form() -> None:
    with pytest.raises(ConfigError) as info:
        MaskingConfig(max_line_chars=8)
    assert info.value.field == "masking.max_line_chars"
    cfg = MaskingConfig(rules=(MaskRule("NUM", r"\d+"),), max_line_chars=None)
    assert MaskingConfig.from_dict(cfg.to_dict()) == cfg
    assert MaskingConfig.from_dict({}) == MaskingConfig()
    with pytest.raises(ConfigError):
        MaskingConfig.from_dict({"rules": [{"name": "NUM"}]})
    with pytest.raises(ConfigError):
        MaskingConfig.from_dict({"bogus": 1})


# --- digit folding ---------------------------------------------------------------


def _classes(rules: tuple[MaskRule, ...]) -> list[str] | None:
    folding = digit_folding(rules)
    if folding is None:
        return None
    groups: dict[int, str] = {}
    for d in "0123456789":
        groups.setdefault(folding.table[ord(d)], "")
        groups[folding.table[ord(d)]] += d
    return sorted(groups.values())


def test_default_rules_fold_all_digits_alike() -> None:
    assert _classes(DEFAULT_MASK_RULES) == ["0123456789"]
    assert MASK.folding is not None


@pytest.mark.parametrize(
    ("pattern", "classes"),
    [
        (r"\d+|[0-9a-f]+|\w+|\b.\s", ["0123456789"]),
        (r"0x[0-9a-f]+", ["0", "123456789"]),
        (r"25[0-5]", ["0134", "2", "5", "6789"]),  # literals 2, 5 and the set [0-5]
        (r"[^7]", ["012345689", "7"]),
        (r"(?=1)(?<!9)x", ["02345678", "1", "9"]),  # look-arounds count too
    ],
)
def test_digit_classes_follow_the_digit_literals(pattern: str, classes: list[str]) -> None:
    got = _classes((MaskRule("X", pattern),))
    assert got is not None
    assert got == sorted(classes)


def test_backreference_disables_folding() -> None:
    assert digit_folding((MaskRule("X", r"(\d)\1"),)) is None


_ALPHABET = "0123456789abcxX.:-/_ <>"
_RULE_SETS = {
    "default": DEFAULT_MASK_RULES,
    "literal_digits": (
        MaskRule("HEX", r"\b0[xX][0-9a-f]+"),
        MaskRule("OCT", r"25[0-5]"),
        MaskRule("NUM", r"\d{2,3}"),
    ),
}


@settings(max_examples=300, deadline=None)
@given(
    line=st.text(alphabet=_ALPHABET, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    rules=st.sampled_from(sorted(_RULE_SETS)),
)
def test_folded_key_determines_exact_masked_lines(line: str, seed: int, rules: str) -> None:
    # The fast-path invariant: two lines with one folded key mask identically whenever
    # the masked form holds no digit that folding could have changed.
    masker = Masker(MaskingConfig(rules=_RULE_SETS[rules]))
    folding = masker.folding
    assert folding is not None
    rng = random.Random(seed)
    by_class: dict[int, list[str]] = {}
    for d in "0123456789":
        by_class.setdefault(folding.table[ord(d)], []).append(d)
    other = "".join(rng.choice(by_class[folding.table[ord(c)]]) if c.isdigit() else c for c in line)
    assert folding.key(other) == folding.key(line)
    masked = masker.mask(line)
    if folding.is_exact(masked):
        assert masker.mask(other) == masked
