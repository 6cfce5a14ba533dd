"""Configuration: TOML → validated, frozen Config, with one precise line per problem and no secret ever echoed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderwatch.config import Config, find_config_path, load_config
from orderwatch.core.durations import format_duration, parse_duration
from orderwatch.errors import ConfigError
from orderwatch.sources import make_source

REPO = Path(__file__).resolve().parent.parent
ACE = """
[sources.ace]
kind = "acedata"
base_url = "https://api.example.com"
"""
OPS = """
[channels.ops]
urls = ["json://127.0.0.1:9/hook"]
"""


def write(tmp_path: Path, text: str, name: str = "orderwatch.toml") -> Path:
    """Write ``text`` as a config file in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None, **kwargs: object) -> list[str]:
    """The problem lines load_config reports for ``path``."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {}, **kwargs)  # type: ignore[arg-type]
    assert caught.value.path == str(path)
    return caught.value.problems


BROKEN = [
    pytest.param(
        ACE + 'interval = "often"\n',
        ['sources.ace.interval: expected a duration like "30s", got "often"'],
        id="bad-duration",
    ),
    pytest.param(
        ACE + 'intervl = "5m"\n',
        ['sources.ace.intervl: unknown key (did you mean "interval"?)'],
        id="unknown-key-suggestion",
    ),
    pytest.param(
        '[sources.ace]\nkind = "acedata"\n',
        ["sources.ace.base_url: required key is missing"],
        id="missing-key",
    ),
    pytest.param(
        ACE
        + '[channels.ops]\nurls = ["json://a"]\n[channels.finance]\nurls = ["json://b"]\n'
        + '[[rules]]\nchannels = ["ops"]\n[[rules]]\nchannels = ["opz"]\n',
        ['rules[1].channels: unknown channel "opz" (defined: finance, ops)'],
        id="unknown-channel",
    ),
    pytest.param(
        ACE + OPS + '[[rules]]\nsources = ["acee"]\nchannels = ["ops"]\n',
        ['rules[0].sources: unknown source "acee" (defined: ace)'],
        id="unknown-source",
    ),
    pytest.param(
        'databse = "x.db"\n' + ACE,
        ['databse: unknown key (did you mean "database"?)'],
        id="unknown-top-level-key",
    ),
    pytest.param(OPS, ["sources: no sources configured (add a [sources.NAME] table)"], id="no-sources"),
    pytest.param(
        'sources = "ace"\n',
        ['sources: expected a table, got "ace"'],
        id="sources-not-a-table",
    ),
    pytest.param(
        ACE + 'page_size = "100"\nincremental = "yes"\nmax_pages = 0\n',
        [
            'sources.ace.page_size: expected a whole number, got "100"',
            "sources.ace.max_pages: must be at least 1, got 0",
            'sources.ace.incremental: expected true or false, got "yes"',
        ],
        id="types",
    ),
    pytest.param(
        '[sources.Ace]\nkind = "acedata"\nbase_url = "https://a"\nname = "x"\n',
        [
            'sources.Ace: names may hold only a-z, 0-9, "_" and "-"',
            "sources.Ace.name: unknown key (the name comes from the table's key [sources.Ace])",
        ],
        id="source-name",
    ),
    pytest.param(
        '[sources.ace]\nkind = "acedta"\nbase_url = "ftp://files.example.com"\n',
        [
            'sources.ace.kind: expected one of "acedata", "lsky", "json", got "acedta"',
            'sources.ace.base_url: expected an http:// or https:// URL, got "ftp://files.example.com"',
        ],
        id="kind-and-url",
    ),
    pytest.param(
        ACE + 'token = "t"\ntoken_file = "t.txt"\n',
        ["sources.ace: set only one of token, token_file"],
        id="two-tokens",
    ),
    pytest.param(
        ACE + 'states = { "0" = 5, ok = "paid" }\n',
        ["sources.ace.states.0: expected a state name, got 5"],
        id="state-value",
    ),
    pytest.param(
        ACE + "params = { pay_way = { nested = 1 } }\n",
        ['sources.ace.params.pay_way: expected a string, number, boolean or a list of them, got {"nested": 1}'],
        id="params-nested-table",
    ),
    pytest.param(
        '[sources.ace]\nkind = "acedata"\nbase_url = "http://api.example.com"\ntoken = "t"\n'
        + 'open_states = ["pendng"]\n',
        [
            "sources.ace.base_url: plain http:// would send the token unencrypted; use https:// or set "
            'allow_insecure_http = true, got "http://api.example.com"',
            'sources.ace.open_states: unknown state (did you mean "Pending"?), got "pendng"',
        ],
        id="source-cross-checks",
    ),
    pytest.param(
        ACE + OPS + '[[rules]]\nto = ["Refundd"]\nevents = ["transtion"]\n',
        [
            'rules[0].events[0]: expected "appeared", "transition" or "vanished", got "transtion"',
            "rules[0].channels: required key is missing",
        ],
        id="rule-shape",
    ),
    pytest.param(
        ACE + OPS + '[[rules]]\nto = ["Refundd"]\nfrom = ["paid"]\nchannels = ["ops"]\n',
        ['rules[0].to: unknown state (did you mean "Refunded"?), got "Refundd"'],
        id="rule-state-typo",
    ),
    pytest.param(
        ACE + OPS + '[[rules]]\nname = "a"\nchannels = ["ops"]\n[[rules]]\nname = "a"\nchannels = ["ops"]\n'
        '[[rules]]\nname = "digest"\nchannels = ["ops"]\n[[rules]]\nchannels = []\n',
        [
            'rules[1].name: duplicate rule name (also rules[0]), got "a"',
            'rules[2].name: reserved for digest messages, got "digest"',
            "rules[3].channels: must not be empty",
        ],
        id="rule-names",
    ),
    pytest.param(
        ACE + '[rules]\nchannels = ["ops"]\n',
        ['rules: expected a list of [[rules]] tables, got {"channels": ["ops"]}'],
        id="rules-not-a-list",
    ),
    pytest.param(
        ACE + '[channels.ops]\nurls = []\ndigest_over = 0\n[channels.two]\nurls = ["json://a", ""]\n',
        [
            "channels.ops.urls: must not be empty",
            "channels.ops.digest_over: must be at least 1, got 0",
            "channels.two.urls[1]: must not be empty",
        ],
        id="channels",
    ),
    pytest.param(
        ACE
        + OPS
        + '[health]\nchannel = "opz"\nafter = "0s"\n[delivery]\nretry_initial = "2h"\n'
        + '[metrics]\nlisten = "9464"\n[log]\nformat = "xml"\nlevl = "info"\n',
        [
            'health.channel: unknown channel "opz" (defined: ops)',
            'health.after: must be longer than 0s, got "0s"',
            'delivery.retry_max: must not be shorter than retry_initial (2h), got "1h"',
            'metrics.listen: expected host:port like "127.0.0.1:9464", got "9464"',
            'log.format: expected "auto", "json" or "console", got "xml"',
            'log.levl: unknown key (did you mean "level"?)',
        ],
        id="sections",
    ),
    pytest.param(
        'database = ""\n[defaults]\ninterval = "never"\nkind = "lsky"\n' + ACE + 'max_response_bytes = "3 parsecs"\n',
        [
            'defaults.interval: expected a duration like "30s", got "never"',
            "defaults.kind: unknown key",
            'sources.ace.max_response_bytes: expected a size like "32MiB" or a number of bytes, got "3 parsecs"',
            'database: expected a file path, got ""',
        ],
        id="defaults-and-database",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_config_reports_every_problem_once(tmp_path: Path, text: str, expected: list[str]) -> None:
    """Each broken config yields exactly these problem lines, all at once, in one ConfigError."""
    assert problems_of(write(tmp_path, text)) == expected


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error is one problem naming its line and column."""
    problems = problems_of(write(tmp_path, ACE + "interval = \n"))
    assert len(problems) == 1
    assert problems[0].startswith("invalid TOML: ")
    assert "line 5, column 12" in problems[0]


def test_config_error_message_names_the_file(tmp_path: Path) -> None:
    """str(ConfigError) starts with the config file's path and joins the problems."""
    path = write(tmp_path, ACE + 'interval = "x"\ntimeout = "y"\n')
    with pytest.raises(ConfigError, match=r"orderwatch\.toml: sources\.ace\.interval: .*; sources\.ace\.timeout"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        ("1m30s500ms", 90.5),
        ("1.5h", 5400.0),
        (" 1h 5m ", 3900.0),
        ("30", 30.0),
        (30, 30.0),
        (1.5, 1.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    """parse_duration reads unit strings, bare numbers and numeric strings as seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "often", "-5s", "5 minutes", "1m1h", "5M", "s", True, float("nan"), -1])
def test_parse_duration_rejects(text: str | float) -> None:
    """parse_duration raises ValueError for anything that is not a non-negative duration."""
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (0, "0s"), (0.25, "250ms"), (90.5, "1m30s500ms"), (86400 * 2 + 1, "2d1s"), (60.0, "1m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """format_duration writes the shortest unit string, largest units first."""
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**13))
def test_format_then_parse_round_trips(milliseconds: int) -> None:
    """Any whole number of milliseconds survives format_duration → parse_duration exactly."""
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_rejects_negative() -> None:
    """A negative number of seconds cannot be formatted."""
    with pytest.raises(ValueError, match="non-negative"):
        format_duration(-1)


def test_example_config_loads(tmp_path: Path) -> None:
    """config.example.toml loads once its environment variables and credential are provided."""
    (tmp_path / "images-token").write_text("lsky-token\n", encoding="utf-8")
    environ = {
        "ACEDATA_TOKEN": "platform-v1-abc",
        "WC_TOKEN": "ck_1:cs_2",
        "SLACK_A": "TA",
        "SLACK_B": "TB",
        "SLACK_C": "tc",
        "SMTP_PASSWORD": "pw",
        "CREDENTIALS_DIRECTORY": str(tmp_path),
    }
    config = load_config(REPO / "config.example.toml", environ=environ)
    assert config.database == REPO / "orderwatch.db"
    ace, images = config.sources["ace"], config.sources["images"]
    assert (ace.interval, ace.jitter, ace.timeout, ace.params) == (30.0, 5.0, 15.0, (("pay_way", "Stripe"),))
    assert ace.token is not None and ace.token.reveal() == "platform-v1-abc"
    assert images.token is not None and images.token.reveal() == "lsky-token"
    assert images.states["unpaid"] == "Pending" and images.states["refunded"] == "Refunded"
    shop = config.sources["shop"]
    assert shop.api is not None and shop.auth == "basic" and shop.api.paging.total_pages == "header:X-WP-TotalPages"
    assert config.channels["ops"].urls[0].reveal() == "slack://TA/TB/tc/#orders"
    assert [r.name for r in config.rules] == ["lost-sales", "refunds", "new-orders"]
    assert config.rules[1].from_states == ("Paid", "Finished")
    assert config.rules[2].events == ("appeared",)
    assert config.health.channel == "ops"
    assert config.delivery.give_up_after == 86400.0


def test_env_expansion_default_escape_and_nesting(tmp_path: Path) -> None:
    """${VAR} expands in strings inside tables and lists; :-default covers unset/empty; $${ is a literal ${."""
    path = write(
        tmp_path,
        '[sources.ace]\nkind = "${KIND}"\nbase_url = "https://${HOST:-api.example.com}/"\n'
        'token = "pre-${TOKEN}-post"\nparams = { q = ["${A}", "$${A}", "${EMPTY:-fallback}", "x${EMPTY}y"] }\n'
        + OPS
        + '[[rules]]\nchannels = ["ops"]\ntitle = "costs $${price}"\n',
    )
    config = load_config(path, environ={"KIND": "acedata", "TOKEN": "s3cret", "A": "one", "EMPTY": ""})
    ace = config.sources["ace"]
    assert ace.kind == "acedata"
    assert ace.base_url == "https://api.example.com"
    assert ace.token is not None and ace.token.reveal() == "pre-s3cret-post"
    assert ace.params == (("q", "one"), ("q", "${A}"), ("q", "fallback"), ("q", "xy"))
    assert config.rules[0].title == "costs ${price}"


def test_unset_env_var_is_one_problem(tmp_path: Path) -> None:
    """An unset ${VAR} is reported once at its key, and nothing else is reported about that key."""
    path = write(tmp_path, ACE + 'token = "${ACEDATA_TOKEN}"\ninterval = "${POLL_EVERY}"\nfull_sweep = "${X"\n')
    assert problems_of(path) == [
        "sources.ace.token: environment variable ACEDATA_TOKEN is not set",
        "sources.ace.interval: environment variable POLL_EVERY is not set",
        'sources.ace.full_sweep: malformed reference: write ${NAME} or ${NAME:-default} ("$${" for a literal "${")',
    ]


def test_token_file_relative_to_config_and_stripped(tmp_path: Path) -> None:
    """token_file is read relative to the config file's folder, surrounding whitespace stripped."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ace").write_text("  tok-from-file\n\n", encoding="utf-8")
    path = write(tmp_path, ACE + 'token_file = "secrets/ace"\n')
    token = load_config(path, environ={}).sources["ace"].token
    assert token is not None and token.reveal() == "tok-from-file"


def test_token_file_problems_name_the_key(tmp_path: Path) -> None:
    """A missing or empty token file is a problem at token_file naming the resolved path."""
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    text = ACE + 'token_file = "missing"\n' + ACE.replace("sources.ace", "sources.two") + 'token_file = "empty"\n'
    assert problems_of(write(tmp_path, text)) == [
        f"sources.ace.token_file: cannot read the token file {tmp_path / 'missing'}: No such file or directory",
        f"sources.two.token_file: the token file {tmp_path / 'empty'} is empty",
    ]


def test_token_credential_reads_credentials_directory(tmp_path: Path) -> None:
    """token_credential reads $CREDENTIALS_DIRECTORY/NAME from the given environ."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ace-token").write_text("cred-token\n", encoding="utf-8")
    path = write(tmp_path, ACE + 'token_credential = "ace-token"\n')
    token = load_config(path, environ={"CREDENTIALS_DIRECTORY": str(creds)}).sources["ace"].token
    assert token is not None and token.reveal() == "cred-token"


def test_token_credential_problems(tmp_path: Path) -> None:
    """token_credential without $CREDENTIALS_DIRECTORY, or naming a missing credential, is a problem at its key."""
    path = write(tmp_path, ACE + 'token_credential = "ace-token"\n')
    assert problems_of(path) == [
        "sources.ace.token_credential: $CREDENTIALS_DIRECTORY is not set (token_credential needs systemd's "
        'LoadCredential=), got "ace-token"'
    ]
    assert problems_of(path, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == [
        f"sources.ace.token_credential: cannot read the credential {tmp_path / 'ace-token'}: No such file or directory"
    ]


def test_no_token_is_allowed(tmp_path: Path) -> None:
    """A source without any token key gets token None."""
    assert load_config(write(tmp_path, ACE), environ={}).sources["ace"].token is None


def test_database_resolution(tmp_path: Path) -> None:
    """database: relative → first $STATE_DIRECTORY entry, else the config's folder; absolute stays as given."""
    path = write(tmp_path, 'database = "data/ow.db"\n' + ACE)
    assert load_config(path, environ={}).database == tmp_path / "data" / "ow.db"
    state = {"STATE_DIRECTORY": "/var/lib/orderwatch:/var/lib/other"}
    assert load_config(path, environ=state).database == Path("/var/lib/orderwatch/data/ow.db")
    absolute = write(tmp_path, 'database = "/srv/ow.db"\n' + ACE, name="abs.toml")
    assert load_config(absolute, environ=state).database == Path("/srv/ow.db")
    assert load_config(write(tmp_path, ACE, name="d.toml"), environ={}).database == tmp_path / "orderwatch.db"


def test_secrets_never_in_error_text(tmp_path: Path) -> None:
    """Tokens, channel URLs, env-expanded values and URL passwords show as <secret>, never verbatim."""
    secrets = ["xoxb-SLACK", "tok-FILE", "pa55word", "env-only-VALUE"]
    (tmp_path / "tok").write_text("tok-FILE", encoding="utf-8")
    path = write(
        tmp_path,
        '[sources.ace]\nkind = "acedata"\nbase_url = "htps://user:pa55word@api.example.com"\ntoken = 5\n'
        'interval = "${POLL}"\n[sources.two]\nkind = "lsky"\nbase_url = "http://api.example.com"\n'
        'token_file = "tok"\npage_size = "${POLL}"\n'
        '[channels.ops]\nurls = ["slack://${SLACK}/c", 7]\ndigest_over = "${POLL}"\n'
        '[[rules]]\nchannels = ["${POLL}"]\n',
    )
    environ = {"POLL": "env-only-VALUE", "SLACK": "xoxb-SLACK"}
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ, check_url=lambda url: "unsupported scheme")
    text = str(caught.value) + "\n".join(caught.value.problems)
    assert not [s for s in secrets if s in text]
    assert caught.value.problems == [
        'sources.ace.interval: expected a duration like "30s", got <secret>',
        "sources.ace.base_url: expected an http:// or https:// URL, got <secret>",
        "sources.ace.token: expected a string, got <secret>",
        "sources.two.page_size: expected a whole number, got <secret>",
        "channels.ops.urls[1]: expected a string, got <secret>",
        "channels.ops.digest_over: expected a whole number, got <secret>",
        "rules[0].channels: unknown channel <secret> (defined: ops)",
    ]


def test_secret_repr_is_masked(tmp_path: Path) -> None:
    """The validated config's repr never shows a token or a channel URL."""
    path = write(tmp_path, ACE + 'token = "tok-REPR"\n' + '[channels.ops]\nurls = ["json://u:PASS@h/"]\n')
    text = repr(load_config(path, environ={}))
    assert "tok-REPR" not in text and "PASS" not in text


def test_hooks_report_at_their_keys(tmp_path: Path) -> None:
    """check_url and check_template problems land at channels.NAME.urls[i] and rules[i].title/body."""
    path = write(
        tmp_path,
        ACE + '[channels.ops]\nurls = ["json://ok", "bad://SECRETPATH"]\n'
        '[[rules]]\nchannels = ["ops"]\ntitle = "{{ broken"\nbody = "fine"\n',
    )
    problems = problems_of(
        path,
        check_url=lambda url: "apprise does not know this scheme" if url.startswith("bad") else None,
        check_template=lambda text: "unexpected end of template" if "broken" in text else None,
    )
    assert problems == [
        "channels.ops.urls[1]: apprise does not know this scheme",
        "rules[0].title: unexpected end of template",
    ]


def test_defaults_inheritance(tmp_path: Path) -> None:
    """Sources inherit [defaults] keys they do not set; their own keys win; unset everywhere → built-ins."""
    path = write(
        tmp_path,
        '[defaults]\ninterval = "2m"\ntimeout = 7\nmax_response_bytes = "500kB"\nopen_states = ["pending"]\n'
        'retry_budget = "30s"\n'
        + ACE
        + '[sources.img]\nkind = "lsky"\nbase_url = "https://img.example.com"\ninterval = "45s"\n'
        'max_response_bytes = "1MiB"\n',
    )
    config = load_config(path, environ={})
    ace, img = config.sources["ace"], config.sources["img"]
    assert (ace.interval, ace.timeout, ace.max_response_bytes, ace.open_states) == (120.0, 7.0, 500_000, ("Pending",))
    assert (img.interval, img.timeout, img.max_response_bytes, img.retry_budget) == (45.0, 7.0, 2**20, 30.0)
    assert (ace.jitter, ace.page_size, ace.full_sweep, ace.max_pages) == (5.0, 100, 21600.0, 1000)


def test_bad_defaults_key_is_reported_once(tmp_path: Path) -> None:
    """A bad [defaults] key is reported under defaults only; its good keys are still inherited."""
    path = write(tmp_path, '[defaults]\ninterval = "often"\n' + ACE + ACE.replace("sources.ace", "sources.two"))
    assert problems_of(path) == ['defaults.interval: expected a duration like "30s", got "often"']


def test_state_overrides(tmp_path: Path) -> None:
    """states = {...} overlays the adapter's defaults: keys case-folded, canonical values spelled canonically."""
    path = write(
        tmp_path,
        '[sources.img]\nkind = "lsky"\nbase_url = "https://img.example.com"\n'
        'states = { "0" = "pending", PAID = "FINISHED", Weird = "OnHold" }\n'
        + OPS
        + '[[rules]]\nto = ["OnHold"]\nchannels = ["ops"]\n',
    )
    config = load_config(path, environ={})
    states = config.sources["img"].states
    assert states == {
        "unpaid": "Pending",
        "paid": "Finished",
        "cancelled": "Cancelled",
        "0": "Pending",
        "weird": "OnHold",
    }
    assert config.rules[0].to == ("OnHold",)


def test_rule_states_fold_and_accept_mapped_names(tmp_path: Path) -> None:
    """Rule states fold to canonical spelling; a non-canonical state is accepted only when a source maps to it."""
    path = write(
        tmp_path,
        '[sources.img]\nkind = "lsky"\nbase_url = "https://img.example.com"\nstates = { hold = "OnHold" }\n'
        + OPS
        + '[[rules]]\nfrom = ["paid"]\nto = ["EXPIRED", "OnHold"]\nchannels = ["ops"]\n',
    )
    rule = load_config(path, environ={}).rules[0]
    assert (rule.from_states, rule.to, rule.name, rule.events) == (
        ("Paid",),
        ("Expired", "OnHold"),
        "rule-1",
        ("transition",),
    )
    broken = write(tmp_path, path.read_text().replace('"OnHold"]', '"onhold"]'), name="b.toml")
    assert problems_of(broken) == ['rules[0].to: unknown state (did you mean "OnHold"?), got "onhold"']


@pytest.mark.parametrize(
    ("multi_value", "expected"),
    [
        ("repeat", (("state", "Pending"), ("state", "Paid"), ("flag", "true"), ("n", "5"), ("x", "1.5"))),
        ("comma", (("state", "Pending,Paid"), ("flag", "true"), ("n", "5"), ("x", "1.5"))),
    ],
)
def test_params_conversion(tmp_path: Path, multi_value: str, expected: tuple[tuple[str, str], ...]) -> None:
    """params become query pairs: lists repeat or comma-join per multi_value; bools and numbers become text."""
    path = write(
        tmp_path,
        ACE
        + f'multi_value = "{multi_value}"\nparams = {{ state = ["Pending", "Paid"], flag = true, n = 5, x = 1.5 }}\n',
    )
    assert load_config(path, environ={}).sources["ace"].params == expected


def test_insecure_http_rules(tmp_path: Path) -> None:
    """Plain http:// with a token is fine on loopback or with allow_insecure_http; a trailing slash is dropped."""
    path = write(
        tmp_path,
        '[sources.local]\nkind = "acedata"\nbase_url = "http://127.0.0.1:8080/"\ntoken = "t"\n'
        '[sources.lan]\nkind = "lsky"\nbase_url = "http://img.lan"\ntoken = "t"\nallow_insecure_http = true\n'
        '[sources.anon]\nkind = "lsky"\nbase_url = "http://img.lan"\n',
    )
    sources = load_config(path, environ={}).sources
    assert [s.base_url for s in sources.values()] == ["http://127.0.0.1:8080", "http://img.lan", "http://img.lan"]


def test_ca_bundle_resolved_and_must_exist(tmp_path: Path) -> None:
    """ca_bundle is resolved against the config's folder and must name an existing file."""
    (tmp_path / "ca.pem").write_text("pem", encoding="utf-8")
    config = load_config(write(tmp_path, '[defaults]\nca_bundle = "ca.pem"\n' + ACE), environ={})
    assert config.sources["ace"].ca_bundle == tmp_path / "ca.pem"
    missing = write(tmp_path, ACE + 'ca_bundle = "nope.pem"\n', name="m.toml")
    assert problems_of(missing) == [f'sources.ace.ca_bundle: file not found, got "{tmp_path / "nope.pem"}"']


def test_find_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config beats $ORDERWATCH_CONFIG, which beats ./orderwatch.toml."""
    monkeypatch.chdir(tmp_path)
    local = write(tmp_path, ACE)
    other = write(tmp_path, ACE, name="other.toml")
    third = write(tmp_path, ACE, name="third.toml")
    assert find_config_path(None, {}) == Path("orderwatch.toml")
    assert find_config_path(None, {"ORDERWATCH_CONFIG": str(other)}) == other
    assert find_config_path(third, {"ORDERWATCH_CONFIG": str(other)}) == third
    assert load_config(environ={}).path == local


def test_find_config_path_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing explicit file is named with its origin; finding none names every path tried."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"nope\.toml \(from --config\) does not exist"):
        find_config_path(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match=r"env\.toml \(from \$ORDERWATCH_CONFIG\)"):
        find_config_path(None, {"ORDERWATCH_CONFIG": "env.toml"})
    with pytest.raises(ConfigError) as caught:
        find_config_path(None, {})
    assert str(tmp_path / "orderwatch.toml") in str(caught.value)
    assert "/etc/orderwatch/orderwatch.toml" in str(caught.value)


def test_values_are_frozen_and_strict() -> None:
    """Config values refuse mutation and unknown fields; a directly made source gets its adapter's states."""
    src = make_source(name="sim", kind="lsky", base_url="http://127.0.0.1:9/", token="t")
    assert src.states["unpaid"] == "Pending" and src.base_url == "http://127.0.0.1:9"
    assert src.open_states == ("Pending",) and repr(src.token) == "<secret>"
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.interval = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config(database=Path("x.db"), sources={}, colour=1)  # type: ignore[call-arg]
