"""Fetching a dataset archive once, checked by md5, with a clear message when offline."""
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from sepnets.errors import UserError


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path, md5):
    got = md5sum(path)
    if got != md5:
        raise UserError(f"{path}: md5 {got}, expected {md5}: an incomplete download or not the "
                        "official archive; delete it and run again")


def fetch(url, dest, md5, timeout=60):
    """Returns `dest`, downloading `url` there first when it is missing; md5 checked either way.

    The download goes to a temporary name and is renamed only after its md5 matched.
    """
    from tqdm import tqdm
    dest = Path(dest)
    if dest.exists():
        check_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.download")
    offline_help = (f"download {url} on a machine with internet access and put it at "
                    f"{dest.resolve()} (md5 {md5}), or pass --archive PATH")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                      dynamic_ncols=True) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"cannot download {url}: {reason}; {offline_help}") from None
    else:
        got = md5sum(tmp)
        if got != md5:
            raise UserError(f"{url}: the downloaded file has md5 {got}, expected {md5}; "
                            f"nothing was kept. {offline_help[0].upper()}{offline_help[1:]}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted or failed download leaves nothing
    return dest
