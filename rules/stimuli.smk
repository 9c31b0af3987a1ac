# Stimulus timing: TextGrids -> word tables; respdict.json -> TR times per story.


rule story_timing:
    input:
        textgrid=path("textgrid"),
        respdict=path("respdict"),
    output:
        words=path("timing", kind="words"),
        trs=path("timing", kind="trs"),
    log:
        log("story_timing", "timing"),
    benchmark:
        benchmark("story_timing", "timing")
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        story="{story}",
        tr=config["stimuli"]["tr"],
        sound_onset=config["stimuli"]["sound_onset"],
        trim_start=config["stimuli"]["trim_start"],
        trim_end=config["stimuli"]["trim_end"],
        fillers=config["stimuli"]["fillers"],
        keep_empty=config["stimuli"]["keep_empty_words"],
    script:
        "../workflow_scripts/story_timing.py"
