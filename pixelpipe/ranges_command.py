"""`pixelpipe ranges refresh`: the cloud platforms' published address lists, downloaded by the user, read,
checked and kept where the processors read them at start.

A thin shell over `processors.cloud_ranges`: every file given is read in its platform's published format
and the new table is built whole (with the lists not given, as they are now) before anything is written;
then all the new files are written at once (`write_cloud_lists`). Any bad file: a one-line error naming it,
exit status 1, and no file replaced. The processors read the lists at start: restart them to use new ones.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from pixelpipe import settings as settings_mod
from processors.cloud_formats import PLATFORMS
from processors.cloud_ranges import (
    BUNDLED,
    REFRESHED_DIR,
    CloudList,
    cloud_summary,
    load_cloud_lists,
    read_published,
    with_cloud,
    write_cloud_lists,
)
from processors.ranges import RangeFileError, load_ranges

_EPILOG = """\
Download the lists first (no network is used here), for example:
  https://ip-ranges.amazonaws.com/ip-ranges.json             --aws
  https://www.gstatic.com/ipranges/cloud.json                --gcp
  https://www.microsoft.com/en-us/download/details.aspx?id=56519
                                  ServiceTags_Public_*.json  --azure
  https://docs.oracle.com/iaas/tools/public_ip_ranges.json   --oracle
  https://www.digitalocean.com/geo/google.csv                --digitalocean
  https://geoip.linode.com/                                  --linode
The lists not given stay as they are. Restart the processors to use the new
lists."""


def ranges_argparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ranges = sub.add_parser("ranges", help="the cloud platforms' address lists used to classify hits")
    actions = ranges.add_subparsers(dest="ranges_command", required=True)
    text = "read the cloud platforms' address lists you downloaded, check and keep them"
    refresh = actions.add_parser(
        "refresh",
        help=text,
        description=text,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for platform in PLATFORMS:
        refresh.add_argument(
            f"--{platform.name}",
            type=Path,
            metavar="FILE",
            help=f"the {platform.title} list ({platform.source}); kept: {platform.kept}",
        )
    refresh.add_argument(
        "--dir",
        type=Path,
        help=f"where to write them (default: $PIXELPIPE_DATA_DIR/{REFRESHED_DIR}, which the processors read)",
    )


def _file_date(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()


def _read_given(args: argparse.Namespace, today: str) -> list[CloudList]:
    given: list[CloudList] = []
    for platform in PLATFORMS:
        path: Path | None = getattr(args, platform.name)
        if path is None:
            continue
        try:
            raw = path.read_bytes()
            file_date = _file_date(path)
        except OSError as exc:
            raise RangeFileError(f"{path}: {exc.strerror or exc}") from exc
        try:
            given.append(read_published(platform, raw, str(path), file_date, today))
        except RangeFileError as exc:
            raise RangeFileError(f"--{platform.name}: {exc}") from exc
    return given


def ranges_main(args: argparse.Namespace) -> int:
    directory: Path = args.dir if args.dir is not None else settings_mod.data_dir_of() / REFRESHED_DIR
    today = datetime.now(UTC).date().isoformat()
    try:
        given = _read_given(args, today)
        if not given:
            names = ", ".join(f"--{p.name}" for p in PLATFORMS)
            print(f"pixelpipe ranges refresh: give at least one list ({names})", file=sys.stderr)
            return 2
        new = {cloud.platform: cloud for cloud in given}
        current = load_cloud_lists(directory)
        kept = [new.get(cloud.platform, cloud) for cloud in current]
        curated = load_ranges()
        table = with_cloud(curated, kept)  # the table the processors will build: it must hold
        written = write_cloud_lists(given, directory)
    except (RangeFileError, OSError) as exc:
        print(f"pixelpipe ranges refresh: {exc}; nothing was replaced", file=sys.stderr)
        return 1
    before = {cloud.platform: cloud for cloud in current}
    for cloud, path in zip(given, written, strict=True):
        was = before[cloud.platform]
        what = "the bundled sample" if was.origin == BUNDLED else "the list refreshed " + was.refreshed
        print(f"{cloud_summary(cloud)} -> {path} (replacing {what}: {len(was.networks):,} ranges)")
    from_clouds = len(table) - len(curated)
    covered = sum(len(cloud.networks) for cloud in kept) - from_clouds
    print(
        f"classification table: {len(table):,} ranges ({len(curated):,} curated, {from_clouds:,} from the "
        f"cloud lists, {covered:,} left out inside curated ranges); restart the processors to use it"
    )
    return 0
