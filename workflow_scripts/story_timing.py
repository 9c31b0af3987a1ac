"""Rule story_timing: word and TR tables of one story."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.stimuli import read_respdict, story_tables, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    story = p.story
    respdict = read_respdict(smk.input.respdict)
    if story not in respdict:
        raise KeyError(f"{smk.input.respdict} has no entry for story {story!r}")
    words, _, trs = story_tables(
        smk.input.textgrid,
        respdict[story],
        tr=p.tr,
        sound_onset=p.sound_onset,
        fillers=p.fillers,
        keep_empty=p.keep_empty,
        trim_start=p.trim_start,
        trim_end=p.trim_end,
    )
    write_table(words, smk.output.words)
    write_table(trs, smk.output.trs)


if __name__ == "__main__":
    main(snakemake)
