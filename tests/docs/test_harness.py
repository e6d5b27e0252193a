"""The harness that runs the tutorial, tested on small pages: a page whose claims hold passes, a
page whose claims are wrong fails naming the line, and each convention does what it says."""

from __future__ import annotations

import re
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.tutorial import (
    Session,
    TutorialError,
    parse,
    reader_env,
    run_page,
    update_yaml_sections,
)


def page(text: str) -> str:
    return textwrap.dedent(text).lstrip()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    work = tmp_path / "work"
    work.mkdir()
    with Session(cwd=work, env=reader_env(tmp_path / "home"), page="fake.md", timeout=60) as s:
        yield s


def run(text: str, session: Session) -> list[str] | None:
    return run_page(parse(page(text)), session)


GOOD = """
    # A page

    ```console
    $ echo "rows read 3 = accepted 2 + quarantined 1"
    rows read 3 = accepted 2 + quarantined 1
    ```
    <!-- expect:
    accepted 2
    re: rows read \\d+ = accepted \\d+
    not: Traceback
    -->
    """


def test_a_page_whose_claims_hold_passes(session: Session) -> None:
    assert run(GOOD, session) is None


def test_a_wrong_expectation_fails_naming_the_line_and_the_claim(session: Session) -> None:
    wrong = GOOD.replace("accepted 2\n    re:", "accepted 3\n    re:")
    with pytest.raises(TutorialError) as err:
        run(wrong, session)
    message = str(err.value)
    assert "fake.md line 3" in message
    assert "'accepted 3'" in message
    assert "rows read 3 = accepted 2" in message  # the output is shown


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        ("re: accepted [3-9]", "matches /accepted [3-9]/"),
        ("not: quarantined", "does not show 'quarantined'"),
        ("exit: 3", "exit code 0, the page says 3"),
    ],
)
def test_each_kind_of_wrong_claim_fails(session: Session, claim: str, why: str) -> None:
    text = GOOD.replace("not: Traceback", claim)
    with pytest.raises(TutorialError) as err:
        run(text, session)
    assert "fake.md line 3" in str(err.value)
    assert why in str(err.value)


def test_exit_codes_are_claims(session: Session) -> None:
    text = """
        ```console
        $ sh -c 'echo held; exit 3'
        ```
        <!-- expect:
        held
        exit: 3
        -->
        """
    assert run(text, session) is None
    with pytest.raises(TutorialError, match="exit code 3, the page says 0"):
        run(text.replace("exit: 3", ""), session)


def test_a_failing_command_before_the_last_fails_the_block(session: Session) -> None:
    text = """
        ```console
        $ false
        $ echo fine
        ```
        """
    with pytest.raises(TutorialError, match="`false` exited 1"):
        run(text, session)


def test_commands_continue_on_backslashes_and_cd_and_export_last(session: Session) -> None:
    text = """
        ```console
        $ mkdir -p project/data
        $ cd project
        $ export GREETING="hello there"
        $ echo $GREETING \\
            from $(basename $(pwd))
        hello there from project
        ```
        <!-- expect:
        hello there from project
        -->
        """
    assert run(text, session) is None
    assert session.cwd.name == "project"


def test_continuation_prompts_join_lines_into_one_command(session: Session) -> None:
    text = """
        ```console
        $ for n in 1 2; do
        >   echo "line $n"
        > done
        line 1
        line 2
        ```
        <!-- expect:
        re: line 1\\nline 2
        -->
        """
    assert run(text, session) is None


def test_a_backslash_line_may_continue_after_the_shells_prompt(session: Session) -> None:
    text = """
        ```console
        $ echo one \\
        >   two
        one two
        ```
        <!-- expect:
        one two
        -->
        """
    assert run(text, session) is None


def test_file_and_update_write_what_the_page_shows(session: Session) -> None:
    text = """
        <!-- tutorial: file loopml.yaml -->
        ```yaml
        # the draft
        project: demo
        # the features
        features:
          request: [a]
        model:
          name: m
        ```

        Replace the features:

        <!-- tutorial: update loopml.yaml -->
        ```yaml
        features:
          request: [a, b]
        gate:
          backtest: 30d
        ```

        ```console
        $ cat loopml.yaml
        ```
        <!-- expect:
        request: [a, b]
        # the features
        re: (?s)model:\\n  name: m\\n\\ngate:\\n  backtest: 30d
        not: request: [a]
        -->
        """
    assert run(text, session) is None


def test_update_keeps_comments_above_the_next_section() -> None:
    before = "a: 1\n\n# about b\nb:\n  x: 1\n# about c\nc: 3\n"
    after = update_yaml_sections(before, "b:\n  x: 2\n")
    assert after == "a: 1\n\n# about b\nb:\n  x: 2\n\n# about c\nc: 3\n"
    with pytest.raises(TutorialError, match="does not parse"):
        update_yaml_sections(before, "b: [unclosed\n")


def test_skipped_blocks_do_not_run(session: Session) -> None:
    text = """
        <!-- tutorial: skip -->
        ```console
        $ touch ran
        ```
        """
    assert run(text, session) is None
    assert not (session.cwd / "ran").exists()


def test_depends_stops_the_page_and_names_what_it_waits_for(session: Session) -> None:
    text = """
        ```console
        $ touch first
        ```

        <!-- depends: loopml init --from
             (drafts the spec) -->
        ```console
        $ touch second
        ```

        <!-- depends: loopml replay -->
        ```console
        $ touch third
        ```
        """
    pending = run(text, session)
    assert pending == ["loopml init --from (drafts the spec)", "loopml replay"]
    assert (session.cwd / "first").exists()
    assert not (session.cwd / "second").exists()
    assert run_page(parse(page(text)), session, stop_at_depends=False) is None
    assert (session.cwd / "third").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_background_servers_run_until_the_end_and_are_stopped(session: Session) -> None:
    port = free_port()
    # The page names port 8000, as a reader's would; the test runs on a free one.
    session.substitutions = [(":8000", f":{port}"), ("127.0.0.1 8000", f"127.0.0.1 {port}")]
    (session.cwd / "hello.txt").write_text("hello from the server\n")
    text = """
        <!-- tutorial: background -->
        ```console
        $ python -m http.server --bind 127.0.0.1 8000
        ```
        <!-- expect:
        ready: http://127.0.0.1:8000/hello.txt
        -->

        ```console
        $ curl -s http://127.0.0.1:8000/hello.txt
        ```
        <!-- expect:
        hello from the server
        -->
        """
    assert run(text, session) is None
    (proc, _, _) = session._background[0]
    assert proc.poll() is None
    session.close()
    assert proc.poll() is not None


def test_a_background_command_that_dies_fails_with_its_output(session: Session) -> None:
    text = """
        <!-- tutorial: background -->
        ```console
        $ sh -c 'echo cannot bind; exit 4'
        ```
        <!-- expect:
        listening
        -->
        """
    with pytest.raises(TutorialError, match="exited with code 4") as err:
        run(text, session)
    assert "cannot bind" in str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```console\necho no prompt\n```\n", "without a `$ ` command"),
        ("```console\n$ echo open\n", "never closed"),
        ("<!-- tutorial: frobnicate -->\n```console\n$ true\n```\n", "unknown directive"),
        ("<!-- tutorial: file -->\n```yaml\na: 1\n```\n", "needs a file name"),
        ("<!-- tutorial: skip -->\n```python\nx = 1\n```\n", "before a block that is not run"),
        ("```console\n$ true\n```\n<!-- expect:\nre: (unclosed\n-->\n", "bad regular expression"),
    ],
)
def test_malformed_pages_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(TutorialError, match=re.escape(problem)):
        parse(text)


def test_other_code_blocks_are_only_shown() -> None:
    steps = parse("```yaml\na: 1\n```\n\n```python\nprint(1)\n```\n\n```\n$ not run\n```\n")
    assert steps == []
