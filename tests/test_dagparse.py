"""DAG-file parsing and submit-file quoting helpers of the local DAGMan executor."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from skyscan.dagman.parse import parse_dag
from skyscan.dagman.quoting import (
    parse_environment,
    parse_vars,
    quote_vars_value,
    split_arguments,
)
from skyscan.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_full_subset(tmp_path: Path) -> None:
    dag = parse_dag(write(tmp_path / "x.dag", """
# a comment

Node_Status_File x.status 30 ALWAYS-UPDATE
jobstate_log x.jobstate.log
CONFIG x.config
DOT x.dot UPDATE
SET_JOB_ATTR Foo = "bar"
job prep prep.sub
JOB scan-0 scan.sub DIR work NOOP
JOB scan-1 scan.sub DONE
vars scan-0 stage="0" npix="12"
VARS scan-1 APPEND stage="0" out="a b.h5"
parent prep Child scan-0 scan-1
SUBDAG EXTERNAL stage1 stage1.dag DIR sub
PARENT scan-0 scan-1 CHILD stage1
SCRIPT DEFER 4 10 PRE stage1 plan.sh $JOB --stage 1
script post stage1 check.sh $RETURN
RETRY scan-0 3 UNLESS-EXIT 2
Retry scan-1 1
PRE_SKIP stage1 100
CATEGORY scan-0 scans
CATEGORY scan-1 scans
MAXJOBS scans 4
PRIORITY prep 10
ABORT-DAG-ON prep 3 RETURN 1
FINAL final final.sub
VARS final status="$(DAG_STATUS)"
"""))
    assert list(dag.nodes) == ["prep", "scan-0", "scan-1", "stage1", "final"]
    assert dag.final == "final" and dag.nodes["final"].final
    assert dag.node_status_file == "x.status" and dag.jobstate_log == "x.jobstate.log" and dag.config == "x.config"
    s0, s1, st = dag.nodes["scan-0"], dag.nodes["scan-1"], dag.nodes["stage1"]
    assert s0.dir == "work" and s0.noop and not s0.done
    assert s1.done and not s1.noop
    assert s0.vars == {"stage": "0", "npix": "12"}
    assert s1.vars == {"stage": "0", "out": "a b.h5"}
    assert dag.nodes["prep"].children == ["scan-0", "scan-1"]
    assert st.parents == ["scan-0", "scan-1"]
    assert st.kind == "subdag" and st.file == "stage1.dag" and st.dir == "sub"
    assert dag.node_dir(st) == tmp_path / "sub"
    assert st.pre is not None and st.pre.executable == "plan.sh" and st.pre.arguments == ["$JOB", "--stage", "1"]
    assert st.pre.defer_status == 4 and st.pre.defer_seconds == 10.0
    assert st.post is not None and st.post.arguments == ["$RETURN"]
    assert (s0.retry, s0.retry_unless_exit) == (3, 2)
    assert (s1.retry, s1.retry_unless_exit) == (1, None)
    assert st.pre_skip == 100
    assert s0.category == s1.category == "scans" and dag.maxjobs == {"scans": 4}
    assert dag.nodes["prep"].priority == 10
    assert dag.nodes["final"].vars == {"status": "$(DAG_STATUS)"}


def test_forward_references_and_all_nodes(tmp_path: Path) -> None:
    dag = parse_dag(write(tmp_path / "x.dag", """
PARENT a CHILD b
RETRY ALL_NODES 2
VARS ALL_NODES common="1"
JOB a a.sub
JOB b b.sub
RETRY b 5
FINAL f f.sub
"""))
    assert dag.nodes["a"].children == ["b"]
    assert (dag.nodes["a"].retry, dag.nodes["b"].retry) == (2, 5)  # the later statement wins
    assert dag.nodes["a"].vars == {"common": "1"} and dag.nodes["f"].vars == {}  # ALL_NODES skips FINAL
    assert dag.nodes["f"].retry == 0


def test_vars_quoting() -> None:
    assert parse_vars(r'a="x \"y\" z" b="c:\\d\\" e="\n"') == [("a", 'x "y" z'), ("b", "c:\\d\\"), ("e", "\\n")]
    assert parse_vars('k = "v"') == [("k", "v")]
    assert parse_vars('k=""') == [("k", "")]
    rng = random.Random(5)
    alphabet = 'ab "\\\' =$()\t'
    for _ in range(200):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        assert parse_vars(f"x={quote_vars_value(value)} y=\"2\"") == [("x", value), ("y", "2")]


@pytest.mark.parametrize(
    "text, match",
    [
        ("k=v", "double quotes"),
        ('k="v', "unterminated"),
        ('k="v"x="w"', "whitespace"),
        ('9k="v"', "invalid VARS macro name"),
        ('queue_x="v"', "queue"),
        ('novalue', "key="),
    ],
)
def test_vars_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_vars(text)


@pytest.mark.parametrize(
    "body, message",
    [
        ("JOB a a.sub\nFOO bar\n", "x.dag:2: unsupported DAG command 'FOO'"),
        ("JOB a a.sub\nPARENT a CHILD b\n", "x.dag:2: unknown node 'b'"),
        ("JOB a a.sub\nVARS nope x=\"1\"\n", "x.dag:2: unknown node 'nope'"),
        ("JOB a a.sub\nVARS a x=\"1\n", "x.dag:2: unterminated"),
        ("JOB a a.sub\nJOB a b.sub\n", "x.dag:2: duplicate node name 'a'"),
        ("JOB a a.sub\nJOB b b.sub\nPARENT a b\n", "x.dag:3: PARENT line needs exactly one CHILD"),
        ("JOB a a.sub\nRETRY a many\n", "x.dag:2: RETRY count must be an integer"),
        ("JOB a a.sub\nFINAL f f.sub\nPARENT a CHILD f\n", "x.dag:3: FINAL node 'f' cannot have parents"),
        ("FINAL f f.sub\nFINAL g g.sub\n", "x.dag:2: second FINAL node"),
        ("JOB a a.sub BOGUS\n", "x.dag:1: unexpected 'BOGUS'"),
        ("JOB a\n", "x.dag:1: JOB needs a node name and a file"),
        ("SUBDAG s s.dag\n", "x.dag:1: only 'SUBDAG EXTERNAL"),
        ("JOB parent a.sub\n", "x.dag:1: 'parent' is a reserved word"),
        ("JOB a a.sub\nSCRIPT MIDDLE a x.sh\n", "x.dag:2: SCRIPT type must be"),
        ("JOB a a.sub\nPARENT a CHILD a\n", "x.dag:2: node 'a' cannot be its own parent"),
        ("INCLUDE other.dag\n", "x.dag:1: unsupported DAG command 'INCLUDE'"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_dag(write(tmp_path / "x.dag", body))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cycle_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"x\.dag:\d+: the DAG has a cycle involving nodes b, c"):
        parse_dag(write(tmp_path / "x.dag", "JOB a a.sub\nJOB b b.sub\nJOB c c.sub\n"
                                             "PARENT a CHILD b\nPARENT b CHILD c\nPARENT c CHILD b\n"))


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read DAG file"):
        parse_dag(tmp_path / "none.dag")


def test_digest_follows_content(tmp_path: Path) -> None:
    p = write(tmp_path / "x.dag", "JOB a a.sub\n")
    d1 = parse_dag(p).digest
    assert parse_dag(p).digest == d1
    write(p, "JOB a a.sub\nJOB b a.sub\n")
    assert parse_dag(p).digest != d1


@pytest.mark.parametrize(
    "value, expected",
    [
        ('"a b  c"', ["a", "b", "c"]),
        ("\"one 'two three' four\"", ["one", "two three", "four"]),
        ("\"'it''s' x\"", ["it's", "x"]),
        ('"say ""hi"""', ['say', '"hi"']),
        ("\"'' empty\"", ["", "empty"]),
        ("\"  'a b'c  \"", ["a bc"]),
        ('""', []),
        ("", []),
        ("old  style\targs", ["old", "style", "args"]),
        ('old \\"quoted\\"', ["old", '"quoted"']),
        ("--nside 8 --pixels stage0/batch-0000.txt", ["--nside", "8", "--pixels", "stage0/batch-0000.txt"]),
    ],
)
def test_split_arguments(value: str, expected: list[str]) -> None:
    assert split_arguments(value) == expected


@pytest.mark.parametrize("value", ['"unterminated', "\"a 'b\"", '"a " b"'])
def test_split_arguments_errors(value: str) -> None:
    with pytest.raises(ValueError):
        split_arguments(value)


def test_parse_environment() -> None:
    assert parse_environment("\"A=1 B='x y' C=\"") == {"A": "1", "B": "x y", "C": ""}
    assert parse_environment("A=1;B=two words") == {"A": "1", "B": "two words"}
    assert parse_environment("") == {}
    with pytest.raises(ValueError, match="NAME=value"):
        parse_environment('"A=1 junk"')
