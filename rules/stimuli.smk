# Stimulus timing: TextGrids -> word and phone tables; respdict.json -> TR times per story.


rule story_timing:
    input:
        textgrid="results/data/{dataset}/derivative/TextGrids/{story}.TextGrid",
        respdict="results/data/{dataset}/derivative/respdict.json",
    output:
        words="results/stimuli/{dataset}/{story}.words.tsv",
        phones="results/stimuli/{dataset}/{story}.phones.tsv",
        trs="results/stimuli/{dataset}/{story}.trs.tsv",
    log:
        "results/logs/story_timing/{dataset}/{story}.log",
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        tr=config["stimuli"]["tr"],
        sound_onset=config["stimuli"]["sound_onset"],
        trim_start=config["stimuli"]["trim_start"],
        trim_end=config["stimuli"]["trim_end"],
        fillers=config["stimuli"]["fillers"],
        keep_empty=config["stimuli"]["keep_empty_words"],
    script:
        "../workflow_scripts/story_timing.py"
