# Downloads: the configured subset of OpenNeuro ds003020 (manifest size + md5), and model snapshots.
# Both need network access: on a cluster they run on the login node (localrules).

OPENNEURO_DATASET = re.escape(DATASET) if SOURCE == "openneuro" else NEVER


def manifest_entry(wildcards):
    """Size and md5 of a manifest path; a clear error for a path the snapshot does not have."""
    try:
        row = MANIFEST_INDEX.loc[wildcards.path]
    except KeyError:
        raise ValueError(
            f"{wildcards.path} is not in {config['download']['manifest']}: the workflow can only "
            "download files of the ds003020 snapshot listed there"
        ) from None
    return {"size": int(row["size"]), "md5": str(row["md5"])}


rule download_ds003020_file:
    output:
        "results/data/{dataset}/{path}",
    log:
        "results/logs/download/{dataset}/{path}.log",
    wildcard_constraints:
        dataset=OPENNEURO_DATASET,
        path=r"(derivative|stimuli)/.+",
    localrule: True
    retries: 2
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    params:
        url=lambda wildcards: f"{config['download']['base_url'].rstrip('/')}/{wildcards.path}",
        entry=manifest_entry,
        retries=config["download"]["retries"],
        chunk_mb=config["download"]["chunk_mb"],
        timeout_s=config["download"]["timeout_s"],
    script:
        "../workflow_scripts/download_file.py"


def dataset_files(wildcards=None):
    """Every data file the configured analysis needs (and the extra kinds asked for)."""
    files = [f"{DATA}/derivative/respdict.json"]
    files += expand(f"{DATA}/derivative/TextGrids/{{story}}.TextGrid", story=ALL_STORIES)
    if SPEECH_MODELS:
        files += expand(f"{DATA}/stimuli/{{story}}.wav", story=ALL_STORIES)
    for subject in SUBJECTS:
        files += [response_file(subject, s) for s in train_stories(subject) + [TEST_STORY]]
    if SOURCE == "openneuro":
        for subject in SUBJECTS:
            prefixes = []
            if "pycortex" in config["download"]["kinds"] or config["figures"]["brain_maps"]:
                prefixes.append(f"derivative/pycortex-db/{subject}/transforms/{subject}_auto/")
            if "freesurfer" in config["download"]["kinds"]:
                prefixes.append(f"derivative/fmriprep/sourcedata/freesurfer/{subject}/")
            files += [
                f"{DATA}/{p}"
                for p in MANIFEST["path"]
                if any(p.startswith(prefix) for prefix in prefixes)
            ]
    return sorted(set(files))


rule download_dataset:
    input:
        dataset_files,
    localrule: True


rule download_model:
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/download_model/{model}.log",
    wildcard_constraints:
        model=_alternatives(HUB_MODELS),
    localrule: True
    retries: 2
    conda:
        "../envs/features.yaml"
    threads: 4
    resources:
        mem_mb=2000,
        runtime=600,
    params:
        repo_id=lambda wildcards: MODELS[wildcards.model]["source"]["hub"],
        revision=lambda wildcards: MODELS[wildcards.model]["source"]["revision"],
        gated=lambda wildcards: MODELS[wildcards.model]["source"].get("gated", False),
    script:
        "../workflow_scripts/download_model.py"
