"""Path validation, globs, and the path helpers of the pure store."""

import pytest
from hypothesis import given, strategies as st

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import paths
from doozertw.store.paths import (
    ANY, MAX_PATH_BYTES, Glob, ancestors, check_path, dir_links, is_valid_path,
    parent_and_name, sort_key)

VALID = ["/", "/a", "/a/b", "/A-Z.09_x", "/ctl/node/n1/addr", "/..", "/.", "/a/-/_"]
INVALID = ["", "a", "a/b", "//", "/a/", "//a", "/a//b", "/a b", "/a*", "/a?",
           "/é", "/a\n", "\n/a", "/a\x00", "/a=b", "/a:b", None, b"/a", 7]


@pytest.mark.parametrize("path", VALID)
def test_valid_paths(path):
    assert is_valid_path(path)
    assert check_path(path) == path


@pytest.mark.parametrize("path", INVALID)
def test_invalid_paths(path):
    assert not is_valid_path(path)
    with pytest.raises(DoozerError) as e:
        check_path(path)
    assert e.value.code == ErrCode.BAD_PATH


def test_length_limit_is_inclusive():
    exact = "/" + "a" * (MAX_PATH_BYTES - 1)
    assert is_valid_path(exact)
    assert not is_valid_path(exact + "a")
    assert is_valid_path("/abc", max_bytes=4)
    assert not is_valid_path("/abcd", max_bytes=4)
    with pytest.raises(DoozerError) as e:
        check_path("/abcd", max_bytes=4)
    assert e.value.code == ErrCode.BAD_PATH


def test_bad_path_detail_is_truncated():
    with pytest.raises(DoozerError) as e:
        check_path("/" + " " * 500)
    assert len(e.value.detail) <= 80


_component = st.text("abcXYZ019.-_", min_size=1, max_size=6)


@given(st.lists(_component, min_size=1, max_size=5))
def test_generated_paths_are_valid(parts):
    assert is_valid_path("/" + "/".join(parts))


@given(st.text(max_size=12))
def test_validity_matches_definition(text):
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
    expected = text == "/" or (
        text.startswith("/") and all(
            part and set(part) <= allowed for part in text[1:].split("/")))
    assert is_valid_path(text) == expected


# -- globs ------------------------------------------------------------------

@pytest.mark.parametrize("pattern, path, matches", [
    ("/a", "/a", True),
    ("/a", "/ab", False),
    ("/a", "/a/b", False),
    ("/?", "/a", True),
    ("/?", "/ab", False),
    ("/a?c", "/abc", True),
    ("/a?c", "/a/c", False),
    ("/*", "/abc", True),
    ("/*", "/a/b", False),
    ("/a/*", "/a/b", True),
    ("/a/*", "/a", False),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/d/c", False),
    ("/a*", "/a", True),
    ("/a*", "/abc", True),
    ("/a*", "/ba", False),
    ("/**", "/a", True),
    ("/**", "/a/b/c", True),
    ("/a/**", "/a/b/c", True),
    ("/a/**", "/a", False),
    ("/a/**", "/ab/c", False),
    ("/**/c", "/a/b/c", True),
    ("/**/c", "/c", False),
    ("/a**z", "/a/b/z", True),
    ("/a**z", "/az", True),
    ("/a.b", "/a.b", True),
    ("/a.b", "/axb", False),  # '.' is literal, not a regex wildcard
    ("/a-b", "/a-b", True),
    ("/", "/", True),
    ("/", "/a", False),
])
def test_glob_matching(pattern, path, matches):
    assert Glob(pattern).match(path) is matches


@pytest.mark.parametrize("pattern, literal", [
    ("/a/b", "/a/b"), ("/", "/"), ("/a/*", None), ("/a?", None), ("/**", None),
])
def test_glob_literal_detection(pattern, literal):
    assert Glob(pattern).literal == literal


@pytest.mark.parametrize("pattern", [
    "", "a", "/a/", "//", "/a//b", "/a b", "/[a]", "/a\n", "/a+", "/(a)", "/a|b",
    "/é", None, b"/a"])
def test_bad_globs(pattern):
    with pytest.raises(DoozerError) as e:
        Glob(pattern)
    assert e.value.code == ErrCode.BAD_PATH


def test_glob_length_limit():
    Glob("/" + "*" * (MAX_PATH_BYTES - 1))
    with pytest.raises(DoozerError):
        Glob("/" + "*" * MAX_PATH_BYTES)
    with pytest.raises(DoozerError):
        Glob("/abcd", max_bytes=4)


def test_any_matches_every_file():
    assert ANY.pattern == "/**"
    for p in ["/a", "/a/b", "/ctl/node/x/addr"]:
        assert ANY.match(p)


@given(st.lists(_component, min_size=1, max_size=4))
def test_literal_glob_matches_only_itself(parts):
    path = "/" + "/".join(parts)
    g = Glob(path)
    assert g.literal == path
    assert g.match(path)
    assert not g.match(path + "x")
    assert not g.match(path + "/x")


# -- helpers ----------------------------------------------------------------

def test_parent_and_name():
    assert parent_and_name("/a") == ("/", "a")
    assert parent_and_name("/a/b/c") == ("/a/b", "c")


def test_ancestors():
    assert ancestors("/") == []
    assert ancestors("/a") == []
    assert ancestors("/a/b") == ["/a"]
    assert ancestors("/a/b/c") == ["/a", "/a/b"]


def test_dir_links():
    assert dir_links("/a") == [("/", "a")]
    assert dir_links("/a/b/c") == [("/", "a"), ("/a", "b"), ("/a/b", "c")]


def test_sort_key_is_depth_first_by_sorted_names():
    files = ["/b", "/a-b", "/a/c", "/a/b/z", "/a.x", "/a/b", "/ab"]
    # Not all of these could coexist as files; the order is what matters.
    ordered = sorted(files, key=sort_key)
    assert ordered == ["/a/b", "/a/b/z", "/a/c", "/a-b", "/a.x", "/ab", "/b"]
    # Plain string sorting would put "/a-b" before "/a/b" ('-' < '/').
    assert sorted(files) != ordered


def test_root_constant():
    assert paths.ROOT == "/"
