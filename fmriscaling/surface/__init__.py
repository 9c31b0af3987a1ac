"""Maps on fsaverage5: subject -> fsaverage projection, group maps, GIFTI files.

- `sphere`: the registration-sphere projection (`SphereProjection`) and fsaverage5's meshes;
- `maps`: which maps each track draws (`MapSpec`) and each subject's values of them;
- `project`: voxels -> vertices (pycortex) -> fsaverage5, the challenge's fsaverage vertices,
  and the ``maps.npz`` / GIFTI files;
- `group`: the mean across subjects and the per-ROI table;
- `plots`: the group figures and interactive pages (nilearn);
- `jobs`: what the workflow's rules call.
"""
