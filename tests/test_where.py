"""The ``where`` sandbox (swan_index/where.py) through the store and the command
line: one expression or refused, errors that quote no stored value, a time and a
memory limit, workers that recover."""

from __future__ import annotations

import resource

import pytest

from swan_index.cli import main
from swan_index.store import Store
from swan_index.where import WhereLimits, runner_for

#: Escapes from ``SELECT id FROM entries WHERE (...)`` and other statements.
ESCAPES = [
    "1=1) UNION SELECT 1 --",
    "1=1 UNION SELECT 1",
    "1=1) OR (1=1",
    ") OR (1=1",
    "1=1) ORDER BY (1",
    "1=1 ORDER BY id",
    "1=1) LIMIT (1",
    "1=1 LIMIT 1",
    "1=1 GROUP BY id HAVING 1=1",
    "1=1 QUALIFY 1=1",
    "1=1 WINDOW w AS ()",
    "1=1 -- a comment",
    "1=1 /* a comment */",
    "1=1;",
    "1=1; SELECT 1",
    "id IN (SELECT id FROM codes)",
    "id IN (SELECT id FROM main.codes)",
    "id IN (SELECT id FROM system.main.entries)",
    "id IN (SELECT 1 FROM duckdb_tables())",
    "id IN (SELECT 1 FROM duckdb_tables)",
    "EXISTS (SELECT 1 FROM (SHOW TABLES))",
    "EXISTS (FROM (DESCRIBE ingest_log))",
    "id IN (SELECT 1 FROM read_csv('/etc/passwd'))",
    "current_setting('memory_limit') <> ''",
    "id = ?",
    "id = $1",
    "",
    "   ",
]
#: Predicates whose failure would quote a stored value (a server path).
VALUE_ECHOES = [
    r"CAST(replace(source_path, '/', '\|') AS INTEGER) = 1",
    "CAST(source_path AS INTEGER) = 1",
    "CAST(reverse(source_path) AS DATE) IS NULL",
    "strptime(source_path, '%Y') IS NULL",
]
#: A predicate that never ends on its own (12-way cross join).
ENDLESS = (
    "(SELECT count(*) FROM entries a, entries b, entries c, entries d, entries e, "
    "entries f, entries g, entries h, entries i, entries j, entries k, entries l "
    "WHERE a.id + b.id + c.id + d.id + e.id + f.id + g.id + h.id + i.id + j.id "
    "+ k.id + l.id > 0) > 0"
)


@pytest.mark.parametrize("where", ESCAPES)
def test_anything_but_one_expression_is_refused(store: Store, where: str):
    with pytest.raises(ValueError, match="^where ") as err:
        store.count(where)
    assert "\n" not in str(err.value)
    assert store.count() == 6 and len(store.get([1, 2, 3, 4, 5, 6])) == 6


@pytest.mark.parametrize(
    "where, expected",
    [
        ("title = 'a;--b /* c */'", 0),  # ; and comment marks inside a literal
        ("rg > 0 AND voxel_size > 0", 6),
        ("id IN (SELECT id FROM entries WHERE rg > 0 ORDER BY rg LIMIT 2)", 2),
        ("id NOT IN (SELECT id FROM layout)", 6),
        ("release_date IS NULL OR year(release_date) > 1990", 6),
        ("(id) IN ((1), (2))", 2),
    ],
)
def test_one_expression_runs(store: Store, where: str, expected: int):
    assert store.count(where) == expected


@pytest.mark.parametrize("where", VALUE_ECHOES)
def test_errors_never_quote_stored_values(store: Store, where: str):
    paths = [r["source_path"] for r in store.get([1, 2, 3, 4, 5, 6])]
    assert all(paths)
    with pytest.raises(ValueError, match="^where ") as err:
        store.count(where)
    message = str(err.value)
    assert "\n" not in message and repr(where) in message
    assert "Error on a stored value (not shown)" in message
    for path in paths:  # under any separator
        assert path.rsplit("/", 1)[-1] not in message
        assert path.replace("/", "\\|") not in message


def test_errors_in_the_users_own_text_keep_their_message(store: Store):
    with pytest.raises(ValueError, match="resolutoin.*columns: id, sha256"):
        store.count("resolutoin < 4")
    with pytest.raises(ValueError, match="syntax error"):
        store.count("resolution <")


def test_a_predicate_that_runs_too_long_is_stopped(store: Store):
    store.where_limits = WhereLimits(seconds=0.5)
    with pytest.raises(ValueError, match=r"^where .*took over 0\.5 s; simplify it$"):
        store.count(ENDLESS)
    assert store.count("rg > 0") == 6  # the worker goes on


def test_memory_is_capped_outside_the_caller(store: Store):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="needs more than 512 MB of memory"):
        store.count("length(repeat('x', 600000000)) > 0")
    with pytest.raises(ValueError, match="needs more than 512 MB of memory"):
        store.count("len(list_resize([1], 100000000)) > 0")
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mb < 300
    assert store.count("rg > 0") == 6  # the worker goes on


def test_a_dead_worker_is_replaced(store: Store):
    assert store.count("rg > 0") == 6
    runner = runner_for(store.where_limits)
    for worker in list(runner._idle):
        worker.process.kill()
        worker.process.wait(10)
    assert store.count("rg > 0") == 6


def test_limits_are_checked():
    with pytest.raises(ValueError, match="seconds"):
        WhereLimits(seconds=0)
    with pytest.raises(ValueError, match="memory_mb"):
        WhereLimits(memory_mb=1)


def test_the_command_line_shows_no_stored_value(store: Store, capsys):
    paths = [r["source_path"] for r in store.get([1, 2, 3, 4, 5, 6])]
    where = VALUE_ECHOES[0]
    code = main(
        ["search", "1", "--store", str(store.path), "--stored-pose", "--where", where]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: where ") and err.count("\n") == 1
    for path in paths:
        assert path.strip("/").split("/")[-1] not in err
        assert path.replace("/", "\\|") not in err


def test_a_store_opened_by_a_relative_path(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(store.path.parent)
    with Store.open(store.path.name, read_only=True) as reader:
        assert reader.count("rg > 0") == 6


def test_the_cluster_of_the_archive_map_is_a_column(store: Store):
    """``cluster`` (shown in the dashboard's tables) filters like any column:
    NULL for an entry with no layout."""
    assert store.count("cluster IS NULL") == 6
    ids = store.entries(("id",))["id"][:4]
    store.set_layout(ids, [[0, 0], [1, 0], [0, 1], [1, 1]], [3, 3, -1, 5])
    assert store.count("cluster = 3") == 2
    assert store.count("cluster = -1 OR cluster IS NULL") == 3
    assert store.count("cluster IN (SELECT cluster FROM entries WHERE id = 1)") == 2
