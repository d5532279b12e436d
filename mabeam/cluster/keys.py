"""CurveZMQ key pairs of the cluster's peers: generate, write, load.

Every peer has a long-term Curve25519 key pair: the coordinator (its public key is what
nodes and clients pin), each node agent and each submitter. ``mabeam keys generate``
writes a pair as two files in the ZPL certificate format that czmq and pyzmq use::

    keys/gpu-1.key           # public key: copy it into the coordinator's nodes/ dir
    keys/gpu-1.key_secret    # secret key, mode 0600: stays on the node

Both carry the peer's ``role`` (``coordinator``, ``node`` or ``client``) and ``name``
as metadata. A node key's name is the node id it may use: the coordinator refuses a
node whose routing id is not its key's name (one node cannot pose as another).
``load_key`` reads either file with clear errors, and refuses a secret file that other
users can read, as ssh does. docs/security.md has the whole story.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias, get_args

import zmq
from zmq.utils import z85

from foundation._public import fixup_module_metadata

__all__ = (
    "ROLES",
    "KeyFileError",
    "KeyPair",
    "Role",
    "generate_keys",
    "load_key",
    "write_keys",
)

Role: TypeAlias = Literal["coordinator", "node", "client"]
ROLES: Final[tuple[str, ...]] = get_args(Role)

PUBLIC_SUFFIX: Final = ".key"
SECRET_SUFFIX: Final = ".key_secret"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")
_Z85_KEY: Final = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_ENTRY: Final = re.compile(r"(?P<key>[A-Za-z0-9_-]+)\s*=\s*(?P<value>.*)")
_MAX_FILE_BYTES: Final = 64 * 1024


class KeyFileError(ValueError):
    """A key file is missing, malformed, or unsafe; the message says which and why."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A peer's Curve key pair: ``public`` and ``secret`` as 40-char Z85 bytes
    (``secret`` is None for a public key read from a ``.key`` file)."""

    role: Role
    name: str
    public: bytes
    secret: bytes | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise KeyFileError(f"a key's role must be one of {', '.join(ROLES)}, got {self.role!r}")
        _check_name(self.name)
        _check_z85("public key", self.public)
        if self.secret is not None:
            _check_z85("secret key", self.secret)
            if zmq.curve_public(self.secret) != self.public:
                raise KeyFileError("the secret key does not belong to the public key")

    @classmethod
    def generate(cls, role: Role, name: str) -> KeyPair:
        """A fresh pair in memory (the local mode's peers use these)."""
        public, secret = zmq.curve_keypair()
        return cls(role, name, public, secret)

    @property
    def public_text(self) -> str:
        """The public key as text (what ZAP reports as the peer's User-Id)."""
        return self.public.decode("ascii")

    def public_only(self) -> KeyPair:
        """The same peer without its secret key (what an allow-list holds)."""
        return KeyPair(self.role, self.name, self.public)

    def require_secret(self, what: str) -> bytes:
        """The secret key, or a clear error naming ``what`` needed it."""
        if self.secret is None:
            raise KeyFileError(
                f"{what} needs a secret key (a {SECRET_SUFFIX} file), but the {self.role} key"
                f" {self.name!r} has only its public half"
            )
        return self.secret

    def __repr__(self) -> str:  # never print a secret key
        secret = "" if self.secret is None else ", secret=<hidden>"
        return (
            f"KeyPair(role={self.role!r}, name={self.name!r},"
            f" public={self.public_text!r}{secret})"
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise KeyFileError(
            f"a key's name must be 1 to 128 chars of A-Z a-z 0-9 . _ : @ + = -, starting"
            f" alphanumeric (a node key's name is its node id), got {name!r}"
        )


def _check_z85(what: str, key: object) -> None:
    # Never echo the value: it may be a secret key (a typo in a secret file).
    if type(key) is not bytes or _Z85_KEY.fullmatch(key.decode("ascii", "replace")) is None:
        size = len(key) if isinstance(key, bytes | str) else type(key).__name__
        raise KeyFileError(f"the {what} must be 40 Z85 characters (got {size})")
    try:
        z85.decode(key)
    except Exception:  # an invalid 5-char group overflows 32 bits
        raise KeyFileError(f"the {what} is not valid Z85") from None


# -- files ----------------------------------------------------------------------------


def generate_keys(
    directory: str | os.PathLike[str], role: Role, name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Generate a key pair and write ``NAME.key`` and ``NAME.key_secret`` into
    ``directory`` (created if needed); return both paths."""
    return write_keys(KeyPair.generate(role, name), directory, overwrite=overwrite)


def write_keys(
    pair: KeyPair, directory: str | os.PathLike[str], *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``pair`` as ``NAME.key`` (public, mode 0644) and ``NAME.key_secret``
    (mode 0600, created with that mode: never readable by others, not even briefly).

    Refuses to replace existing files unless ``overwrite`` (a lost secret key locks a
    node out until the operator installs its new public key).
    """
    secret = pair.require_secret("write_keys")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public_path = folder / f"{pair.name}{PUBLIC_SUFFIX}"
    secret_path = folder / f"{pair.name}{SECRET_SUFFIX}"
    if not overwrite:  # checked again, atomically, when each file is put in place
        for path in (public_path, secret_path):
            if path.exists():
                raise KeyFileError(f"{path} exists; pass overwrite=True (--force) to replace it")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"{pair.role} key {pair.name!r}, generated {stamp} by mabeam"
    public_text = _render(
        f"#   mabeam public {head}\n#   Give it to the coordinator's operator"
        f" ({pair.role}s allow-list).\n",
        pair,
        None,
    )
    secret_text = _render(
        f"#   mabeam SECRET {head}\n#   Keep it private: anyone holding it acts as"
        f" this {pair.role}.\n",
        pair,
        secret,
    )
    _write(secret_path, secret_text, 0o600, overwrite)
    _write(public_path, public_text, 0o644, overwrite)
    return public_path, secret_path


def _render(banner: str, pair: KeyPair, secret: bytes | None) -> str:
    lines = [
        banner.rstrip("\n"),
        "metadata",
        f'    role = "{pair.role}"',
        f'    name = "{pair.name}"',
        "curve",
        f'    public-key = "{pair.public_text}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int, overwrite: bool) -> None:
    """Write ``text`` to a temporary file created with ``mode``, then put it in place:
    renamed over ``path``, or (not ``overwrite``) linked, which fails if it exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed the public file's mode
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(
                    f"{path} exists; pass overwrite=True (--force) to replace it"
                ) from None
    finally:
        tmp.unlink(missing_ok=True)


def load_key(path: str | os.PathLike[str], *, role: Role | None = None) -> KeyPair:
    """Read a ``.key`` (public) or ``.key_secret`` (secret) file.

    ``role``, when given, must match the file's. A file without mabeam metadata (one
    written by czmq or pyzmq) takes ``role`` (default ``client``) and the file name
    without its suffix as its name. Raises ``KeyFileError`` for a missing, malformed or
    foreign file, and for a secret file other users may read (``chmod 600 FILE``).
    """
    file = Path(path)
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {file} is not a regular file")
        if info.st_size > _MAX_FILE_BYTES:
            raise KeyFileError(f"key file {file} is {info.st_size} bytes: not a key file")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {file} does not exist (mabeam keys generate)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {file}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {file} is not text: not a key file") from None
    fields = _parse(file, text)
    public, secret = fields.get("curve.public-key"), fields.get("curve.secret-key")
    if public is None:
        raise KeyFileError(f"key file {file} has no curve public-key")
    if secret is not None and info.st_mode & 0o077:
        raise KeyFileError(
            f"secret key file {file} is readable by other users (mode"
            f" {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {file}"
        )
    found_role = fields.get("metadata.role", role or "client")
    if found_role not in ROLES:
        raise KeyFileError(f"key file {file}: role {found_role!r} is not one of {', '.join(ROLES)}")
    if role is not None and found_role != role:
        raise KeyFileError(f"key file {file} holds a {found_role} key, but a {role} key is needed")
    name = fields.get("metadata.name") or _stem(file)
    try:
        return KeyPair(
            found_role,  # type: ignore[arg-type]  # checked against ROLES above
            name,
            public.encode("ascii", "replace"),
            None if secret is None else secret.encode("ascii", "replace"),
        )
    except KeyFileError as exc:
        raise KeyFileError(f"key file {file}: {exc}") from None


def _stem(file: Path) -> str:
    name = file.name
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return file.stem


def _parse(file: Path, text: str) -> dict[str, str]:
    """The ``section.key`` entries of a ZPL certificate (comments and blanks skipped)."""
    fields: dict[str, str] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            section = stripped
            continue
        entry = _ENTRY.fullmatch(stripped)
        if entry is None:
            raise KeyFileError(f"key file {file}, line {number}: expected 'name = \"value\"'")
        value = entry["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[f"{section}.{entry['key']}"] = value
    return fields


fixup_module_metadata(__name__, globals())
