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
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=30,
    params:
        test_extra_trim=config["encoding"]["test_extra_trim"],
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/noise_ceiling.py"
