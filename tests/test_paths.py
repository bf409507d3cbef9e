"""Path validation, globs, and the path helpers of the pure store."""

import re

import pytest
from hypothesis import given, strategies as st

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import paths
from doozertw.store.paths import (
    ANY, MAX_PATH_BYTES, Glob, check_path, dir_links, is_valid_path, sort_key)

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


# -- what a client is told (the detail goes out on the wire) -----------------

def _detail(fn, *args):
    with pytest.raises(DoozerError) as e:
        fn(*args)
    assert e.value.code == ErrCode.BAD_PATH
    return e.value.detail


def test_bad_path_and_bad_glob_details_quote_the_input():
    assert _detail(check_path, "/a b") == "'/a b'"
    assert _detail(Glob, "/a b") == "bad glob '/a b'"
    assert _detail(Glob, None) == "bad glob"
    assert _detail(Glob, "/abcd", 4) == "bad glob"


def test_bad_path_detail_is_cut_only_beyond_80_characters():
    fits = "/" + " " * 77         # repr adds two quotes: 80 characters
    assert _detail(check_path, fits) == repr(fits)
    longer = fits + " "
    assert _detail(check_path, longer) == repr(longer)[:77] + "..."


def test_glob_keeps_its_pattern():
    glob = Glob("/a/*")
    assert glob.pattern == "/a/*" and repr(glob) == "Glob('/a/*')"


@pytest.mark.parametrize("pattern, path, matches", [
    ("/??*a", "/xyza", True),      # every '?' of the pattern counts
    ("/??*a", "/xa", False),
    ("/*a*b", "/xaxb", True),      # every '*' of the pattern counts
    ("/*a*b", "/a/b", False),      # '*' stops at '/'
    ("/**a*b", "/x/a/b", False),
    ("/**a*b", "/x/ayb", True),    # '**' crosses '/'
    ("/**a**b", "/x/a/y/b", True),  # every '**' of the pattern counts
    ("/***b", "/b", True),         # a run of wildcards may all match nothing
    ("/*a*b", "xab", False),       # a whole-path match starts at '/'
    ("/*a*b", "aab", False),
])
def test_nfa_globs_match_like_the_regex_definition(pattern, path, matches):
    tokens = paths._GLOB_TOKEN.findall(pattern)
    assert not paths._regex_is_safe(tokens)   # these take the NFA
    assert (re.compile(paths._translate(tokens) + r"\Z").match(path) is not None) is matches
    assert Glob(pattern).match(path) is matches
