"""The embedded demo: a synthetic dataset in the ds003020 layout and tiny offline models.

Nothing in the analysis imports this package; the workflow's demo rules and the tests do.

``fmriscaling.demo.names``
    `synthetic_story_names`: the demo's story names (standard library only, so a workflow
    parse can ask for them without loading the generator).
``fmriscaling.demo.stories``
    seeded stories: words, TextGrids, audio, true TR features.
``fmriscaling.demo.synthetic``
    `generate_dataset`: responses, anatomy and ground truth, written in the ds003020 layout.
``fmriscaling.demo.anatomy``
    a synthetic subject's volume, mask, smooth voxel weights and auditory voxels.
``fmriscaling.demo.truth``
    closed forms of the generative model: its HRF, the noise ceiling and the expected test r.
``fmriscaling.demo.cortex``
    the demo subjects' pycortex folders on pycortex's sample subject S1 (a coarse functional
    grid each) and a synthetic FreeSurfer parcellation of S1's surface.
``fmriscaling.demo.tiny_lm``, ``fmriscaling.demo.tiny_speech``, ``fmriscaling.demo.tiny_vision``
    tiny random causal LMs (with a trained BPE tokenizer), speech and vision models, saved like
    hub snapshots.
``fmriscaling.demo.vision``
    a synthetic Algonauts 2023 challenge copy for the vision track, with known ground truth.

Submodules are not imported here, so importing the package stays free.
"""
