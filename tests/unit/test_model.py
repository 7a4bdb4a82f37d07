from rollup.model import version_key


def test_versions_order_numerically_not_as_text():
    assert version_key("8.2.1") < version_key("8.3.0") < version_key("8.10.0")


def test_versions_with_build_suffix_compare_by_numbers():
    assert version_key("8.3.0-13") > version_key("8.3.0-2")
