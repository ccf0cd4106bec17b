"""PEP 517 backend: setuptools, without downloading anything.

pip builds in an isolated environment that hides the system's site-packages, so a
`requires = ["setuptools"]` would be fetched from an index, and an offline
`pip install ./sdk/python` would fail. This shim needs nothing installed in that environment:
it imports setuptools from the interpreter's own site-packages when the isolated path lacks it,
and asks pip for no extra build requirements.
"""
import site
import sys

try:
    from setuptools import build_meta as _setuptools
except ImportError:
    _dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        _dirs.append(site.getusersitepackages())
    for _d in _dirs:
        if _d not in sys.path:
            sys.path.append(_d)
    try:
        from setuptools import build_meta as _setuptools
    except ImportError:
        raise ImportError("building sandboxd needs setuptools (Debian: apt-get install "
                          "python3-setuptools; elsewhere: pip install setuptools)") from None


def _wheel_support():
    """[] when setuptools can write wheels here, else ["wheel"] (fetched by pip: online)."""
    try:
        from setuptools.command import bdist_wheel  # noqa: F401  (setuptools >= 70.1)
        return []
    except ImportError:
        pass
    try:
        import wheel.bdist_wheel  # noqa: F401
        return []
    except ImportError:
        return ["wheel"]


def get_requires_for_build_wheel(config_settings=None):
    return _wheel_support()


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return _wheel_support()


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _setuptools.build_sdist(sdist_directory, config_settings)


if hasattr(_setuptools, "build_editable"):
    def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
        return _setuptools.prepare_metadata_for_build_editable(metadata_directory,
                                                               config_settings)

    def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
