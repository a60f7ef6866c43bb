"""dlgate.yml: every mistake is a configuration error naming the file, the line and the fix."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pytest

from dlgate.config import (
    BaselineSettings,
    Config,
    PathsSettings,
    PipelineSettings,
    load_text,
    path_field,
    section,
)
from dlgate.errors import ConfigError
from dlgate.report import STAGES

SOURCE = "dlgate.yml @ 1a2b3c4"


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, SOURCE)
    return info.value


def assert_error(text: str, line: int, *fragments: str) -> ConfigError:
    """The error names the source and the line in its message, and says each fragment."""
    err = config_error(text)
    message = str(err)
    assert err.file == SOURCE
    assert err.line == line, message
    name, _, rev = SOURCE.partition(" @ ")
    assert message.startswith(f"{name}:{line} @ {rev}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return err


# --- a throwaway section exercising every supported field type ------------------------------


@dataclass(frozen=True)
class Limits:
    size: int = 1
    name: str = "x"


@section("zz_test")
@dataclass(frozen=True)
class ZzSettings:
    names: tuple[str, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    limits: Limits = Limits()
    per_class: Mapping[str, Limits] = field(default_factory=dict)
    files: tuple[str, ...] = path_field(())
    report: str = path_field("")
    flag: bool = False
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ValueError("`ratio` must be between 0 and 1")


# --- defaults and the shape of the file ------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# nothing configured yet\n", "---\n"])
def test_an_empty_file_gives_the_defaults(text: str) -> None:
    config = load_text(text, SOURCE)
    assert config.source == SOURCE
    assert config.stages == STAGES
    assert config.paths == PathsSettings()
    assert config.pipeline == PipelineSettings()
    assert config.baseline == BaselineSettings()
    assert config.get(ZzSettings) == ZzSettings()


def test_a_full_core_file_is_read_into_typed_settings() -> None:
    config = load_text(
        """\
version: 1
stages: [changes, accuracy]
paths:
  data: ["data/**", "labels.csv"]
  code: "src/**/*.py"          # one value where a list is expected: a list of one
  ignore: []
pipeline:
  train: python train.py --out {out}
  model: model:make_model
  timeout: 90                   # an integer where a number is expected
  hook_timeout: 12.5
  seed: 7
baseline:
  branch: trunk
  missing: warn
  max_distance: 0
""",
        SOURCE,
    )
    assert config.stages == ("changes", "accuracy")
    assert config.paths.data == ("data/**", "labels.csv")
    assert config.paths.code == ("src/**/*.py",)
    assert config.paths.ignore == ()
    assert config.pipeline.train == "python train.py --out {out}"
    assert config.pipeline.model == "model:make_model"
    assert config.pipeline.timeout == 90.0
    assert isinstance(config.pipeline.timeout, float)
    assert config.pipeline.hook_timeout == 12.5
    assert config.pipeline.seed == 7
    assert config.baseline == BaselineSettings(branch="trunk", missing="warn", max_distance=0)


def test_a_string_field_keeps_a_version_like_number_as_written() -> None:
    config = load_text("baseline:\n  branch: 1.10\n", SOURCE)
    assert config.baseline.branch == "1.10"


def test_an_empty_section_gives_its_defaults() -> None:
    assert load_text("pipeline:\nbaseline:\n", SOURCE).pipeline == PipelineSettings()


@pytest.mark.parametrize("text", ["- paths\n- pipeline\n", "just a string\n", "42\n"])
def test_the_top_level_must_be_a_mapping(text: str) -> None:
    assert_error(text, 1, "top level must be a mapping")


def test_settings_are_frozen() -> None:
    config = load_text("pipeline:\n  seed: 3\n", SOURCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pipeline.seed = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.stages = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.sections["pipeline"] = PipelineSettings()  # type: ignore[index]
    weights = load_text("zz_test:\n  weights: {a: 1}\n", SOURCE).get(ZzSettings).weights
    with pytest.raises(TypeError):
        weights["a"] = 2.0  # type: ignore[index]


def test_config_error_is_a_usage_exit() -> None:
    assert ConfigError.exit_code == 2
    assert config_error("pipline: {}\n").exit_code == 2


def test_get_refuses_an_unregistered_class() -> None:
    @dataclass(frozen=True)
    class NotASection:
        x: int = 0

    with pytest.raises(KeyError, match="NotASection"):
        load_text("", SOURCE).get(NotASection)


def test_a_section_name_cannot_be_registered_twice() -> None:
    @dataclass(frozen=True)
    class Other:
        x: int = 0

    with pytest.raises(ValueError, match="zz_test"):
        section("zz_test")(Other)
    with pytest.raises(TypeError, match="dataclass"):
        section("zz_not_a_dataclass")(int)


# --- unknown keys name the closest valid one --------------------------------------------------


def test_an_unknown_top_level_key_suggests_the_closest() -> None:
    err = assert_error(
        "version: 1\npipline:\n  timeout: 3\n", 2, "unknown key 'pipline'", "'pipeline'"
    )
    # ...and lists the valid keys, core and registered stage sections alike.
    for key in ("version", "stages", "paths", "pipeline", "baseline", "zz_test"):
        assert key in str(err)


@pytest.mark.parametrize(
    ("text", "line", "typo", "meant"),
    [
        ("pipeline: {timout: 3}\n", 1, "timout", "timeout"),
        ("version: 1\npipeline:\n  train: make\n  timout: 3\n", 4, "timout", "timeout"),
        ("paths:\n  dta: [x]\n", 2, "dta", "data"),
        ("baseline:\n  tracking-uri: x\n", 2, "tracking-uri", "tracking_uri"),
        ("zz_test:\n  limits:\n    sise: 2\n", 3, "sise", "size"),
        ("zz_test:\n  per_class:\n    cat:\n      nmae: big\n", 4, "nmae", "name"),
    ],
)
def test_an_unknown_nested_key_suggests_the_closest(
    text: str, line: int, typo: str, meant: str
) -> None:
    assert_error(text, line, f"unknown key {typo!r}", f"did you mean {meant!r}?")


def test_an_unknown_key_far_from_any_has_no_suggestion_but_lists_the_valid_ones() -> None:
    err = assert_error("pipeline:\n  zzzzzz: 1\n", 2, "unknown key 'zzzzzz'", "valid: train")
    assert "did you mean" not in str(err)


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        ("pipeline:\n  seed: 1\n  seed: 2\n", 3, "key 'seed' appears twice in `pipeline`"),
        ("paths: {}\npaths: {}\n", 2, "key 'paths' appears twice in the top level"),
        ("zz_test:\n  weights:\n    a: 1\n    a: 2\n", 4, "key 'a' appears twice"),
    ],
)
def test_a_duplicate_key_is_an_error(text: str, line: int, where: str) -> None:
    assert_error(text, line, where)


# --- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        # a string where a number is expected
        ("pipeline:\n  timeout: soon\n", 2, ("`pipeline.timeout` must be a number", "'soon'")),
        ("pipeline:\n  seed: one\n", 2, ("`pipeline.seed` must be an integer", "'one'")),
        # a float is not an integer
        ("pipeline:\n  seed: 1.5\n", 2, ("`pipeline.seed` must be an integer", "'1.5'")),
        # a list or a mapping where a string is expected
        (
            "pipeline:\n  train: [python, x.py]\n",
            2,
            ("`pipeline.train` must be a string", "not a list"),
        ),
        (
            "pipeline:\n  model:\n    a: b\n",
            3,
            ("`pipeline.model` must be a string", "not a mapping"),
        ),
        # a mapping where a list is expected
        ("paths:\n  data:\n    train: x\n", 3, ("`paths.data` must be a list",)),
        # a list where a mapping (a section) is expected
        ("pipeline: [a, b]\n", 1, ("`pipeline` must be a mapping",)),
        # items of a list and values of a mapping are checked too
        ("paths:\n  data: [a, [b]]\n", 2, ("`paths.data[]` must be a string",)),
        ("zz_test:\n  weights:\n    a: heavy\n", 3, ("`zz_test.weights.a` must be a number",)),
        ("zz_test:\n  weights: [1, 2]\n", 2, ("`zz_test.weights` must be a mapping",)),
        ("zz_test:\n  names: {a: 1}\n", 2, ("`zz_test.names` must be a list",)),
        ("zz_test:\n  limit: lots\n", 2, ("`zz_test.limit` must be an integer",)),
        ("zz_test:\n  limits: 3\n", 2, ("`zz_test.limits` must be a mapping",)),
    ],
)
def test_a_wrong_type_names_the_key_and_the_expected_type(
    text: str, line: int, fragments: tuple[str, ...]
) -> None:
    assert_error(text, line, *fragments)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("pipeline:\n  seed: true\n", 2, "pipeline.seed"),
        ("baseline:\n  max_distance: no\n", 2, "baseline.max_distance"),  # YAML 1.1's `no`
        ("pipeline:\n  timeout: yes\n", 2, "pipeline.timeout"),
        ("zz_test:\n  weights: {a: true}\n", 2, "zz_test.weights.a"),
    ],
)
def test_a_boolean_is_not_a_number(text: str, line: int, key: str) -> None:
    assert_error(text, line, f"`{key}` must be a")


def test_a_number_is_not_a_boolean() -> None:
    assert_error("zz_test:\n  flag: 1\n", 2, "`zz_test.flag` must be a boolean")
    assert load_text("zz_test:\n  flag: true\n", SOURCE).get(ZzSettings).flag is True


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_number_must_be_finite(value: str) -> None:
    # A NaN tolerance compares false with everything: a check would silently pass.
    assert_error(f"zz_test:\n  ratio: {value}\n", 2, "`zz_test.ratio` must be a finite number")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("pipeline:\n  timeout: 0\n", "`timeout` must be a positive number"),
        ("pipeline:\n  hook_timeout: -5\n", "`hook_timeout` must be a positive number"),
        ("baseline:\n  max_distance: -1\n", "`max_distance` must be 0 or more"),
        ("zz_test:\n  ratio: 1.5\n", "`ratio` must be between 0 and 1"),
    ],
)
def test_a_cross_field_check_of_a_section_is_a_config_error(text: str, fragment: str) -> None:
    assert_error(text, 2, fragment)


def test_every_supported_field_type_is_read() -> None:
    settings = load_text(
        """\
zz_test:
  names: [a, b]
  weights: {cat: 1, dog: 0.25}
  mode: slow
  limit: 3
  limits: {size: 2}
  per_class:
    cat: {name: kitty}
  files:
    - data/a.png
    - docs/**
  report: out/report.md
  flag: yes
  ratio: 1
""",
        SOURCE,
    ).get(ZzSettings)
    assert settings == ZzSettings(
        names=("a", "b"),
        weights={"cat": 1.0, "dog": 0.25},
        mode="slow",
        limit=3,
        limits=Limits(size=2),
        per_class={"cat": Limits(name="kitty")},
        files=("data/a.png", "docs/**"),
        report="out/report.md",
        flag=True,
        ratio=1.0,
    )
    assert isinstance(settings.weights["cat"], float)


def test_an_optional_field_takes_null() -> None:
    assert load_text("zz_test:\n  limit: null\n", SOURCE).get(ZzSettings).limit is None
    assert load_text("zz_test:\n  limit: ~\n", SOURCE).get(ZzSettings).limit is None


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        (
            "baseline:\n  missing: wran\n",
            2,
            (
                "`baseline.missing` must be one of 'compute', 'warn', 'fail'",
                "'wran'",
                "did you mean 'warn'?",
            ),
        ),
        ("zz_test:\n  mode: slwo\n", 2, ("must be one of 'fast', 'slow'", "did you mean 'slow'?")),
    ],
)
def test_a_literal_with_a_typo_suggests_the_right_value(
    text: str, line: int, fragments: tuple[str, ...]
) -> None:
    assert_error(text, line, *fragments)


# --- version and stages -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2", "0"])
def test_only_version_1_exists(value: str) -> None:
    assert_error(f"paths: {{}}\nversion: {value}\n", 2, "`version` must be 1")


@pytest.mark.parametrize("value", ["'1'", "1.0", "[1]"])
def test_version_must_be_the_integer_1(value: str) -> None:
    assert_error(f"version: {value}\n", 1, "`version` must be an integer")


def test_an_unknown_stage_suggests_the_closest() -> None:
    assert_error("stages:\n  - changes\n  - acuracy\n", 3, "unknown stage 'acuracy'", "'accuracy'")


def test_a_single_stage_may_be_written_without_a_list() -> None:
    assert load_text("stages: data\n", SOURCE).stages == ("data",)
    assert_error("stages: dta\n", 1, "unknown stage 'dta'", "'data'")


def test_stages_must_be_a_list_of_names() -> None:
    assert_error("stages: {data: true}\n", 1, "`stages` must be a list")
    assert_error("stages: [[data]]\n", 1, "`stages[]` must be a string")


# --- paths stay inside the repository ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "value"),
    [
        ("paths:\n  data: ['../x']\n", 2, "../x"),
        ("paths:\n  data: ['/abs/data/**']\n", 2, "/abs/data/**"),
        ("paths:\n  data: ['~/x']\n", 2, "~/x"),
        ("paths:\n  code: ['src/../../x.py']\n", 2, "src/../../x.py"),
        ("paths:\n  ignore: ['..\\x']\n", 2, "..\\x"),  # a Windows-style separator
        ("pipeline:\n  artifact: /etc/passwd\n", 2, "/etc/passwd"),
        ("zz_test:\n  report: ~/report.md\n", 2, "~/report.md"),
        # the item's own line in a block list
        ("zz_test:\n  files:\n    - ok/a.png\n    - ../../etc\n", 4, "../../etc"),
    ],
)
def test_a_path_that_leaves_the_repository_is_refused(text: str, line: int, value: str) -> None:
    err = assert_error(text, line, f"{value!r} leaves the repository", "relative to the repository")
    assert re.search(r"`(paths|pipeline|zz_test)\.\w+`", str(err))


def test_paths_inside_the_repository_are_accepted() -> None:
    config = load_text("paths:\n  data: ['data/..hidden/**', '.dvc/config']\n", SOURCE)
    assert config.paths.data == ("data/..hidden/**", ".dvc/config")


# --- YAML itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("paths:\n  data: [a\npipeline: {}\n", 3),  # an unclosed flow list
        ("pipeline:\n  seed: 1\n   bad: 2\n", 3),  # bad indentation
        ("pipeline:\n\tseed: 1\n", 2),  # a tab
        ("paths: {}\n---\npipeline: {}\n", 2),  # two documents
    ],
)
def test_invalid_yaml_names_the_line(text: str, line: int) -> None:
    assert_error(text, line, "not valid YAML")


def test_an_error_without_a_source_names_dlgate_yml() -> None:
    with pytest.raises(ConfigError, match=r"^dlgate\.yml:1: "):
        load_text("pipline: {}\n")


def test_config_is_the_loaded_type() -> None:
    assert isinstance(load_text("", SOURCE), Config)


def test_a_core_only_load_reads_the_core_and_leaves_the_stages_sections_alone() -> None:
    text = (
        "version: 1\n"
        "stages: [training, accuracy]\n"
        "pipeline:\n  train: python train.py --out {out}\n  timeout: 30\n"
        "accuracy:\n  tolerence: 0.5\n"  # a typo the whole load reports; the core load skips
        "no_such_section: {}\n"
    )
    core = load_text(text, SOURCE, core_only=True)
    assert core.stages == ("training", "accuracy")
    assert core.pipeline.train == "python train.py --out {out}"
    assert core.pipeline.timeout == 30
    assert set(core.sections) == {"paths", "pipeline", "baseline"}
    assert_error(text, 8, "unknown key 'no_such_section'")  # the whole load refuses both
    assert_error(text.replace("no_such_section: {}\n", ""), 7, "unknown key 'tolerence'")


def test_a_core_only_load_still_refuses_a_bad_core_section() -> None:
    text = "pipeline:\n  timeout: -1\naccuracy: {}\n"
    with pytest.raises(ConfigError, match="`timeout` must be a positive number"):
        load_text(text, SOURCE, core_only=True)


def test_a_core_only_load_imports_no_check() -> None:
    """What makes it worth having: the checks (numpy, onnxruntime, ...) load later."""
    script = (
        "import sys\n"
        "from dlgate.config import load_text\n"
        "load_text('pipeline:\\n  train: x\\naccuracy: {}\\n', core_only=True)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dlgate.checks', 'numpy'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
