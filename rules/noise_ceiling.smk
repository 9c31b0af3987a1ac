# Noise ceiling (CC_max, SP, TP per voxel) from the repeats of the test story.


rule noise_ceiling:
    input:
        repeats=path("responses", story=TEST_STORY),
    output:
        path("noise_ceiling"),
    log:
        log("noise_ceiling", "noise_ceiling"),
    benchmark:
        benchmark("noise_ceiling", "noise_ceiling")
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        # 5.1 GB at ds003020's size (95,556 voxels, 10 repeats: benchmarks/RESULTS.md, the
        # real-size rehearsal); the ridge jobs' 64 GB would hold a node's memory for nothing
        mem_mb=lambda wildcards, attempt: attempt * 8000,
        runtime=30,
    params:
        test_extra_trim=config["encoding"]["test_extra_trim"],
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/noise_ceiling.py"
