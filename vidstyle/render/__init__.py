"""One render: a video (or a still image, or one part of a video) in one style to one output.

The path, in the order it runs:

- `prepare`: `prepare(job) -> RenderPlan`, every check that can fail before a frame is decoded;
- `pipeline`: `build_stages` and `run`, decode → stylize → smooth → encode, and `render`, the
  whole of one planned render; `stylize_video` is the one-call API;
- `events`: what a render reports on the way (started, frame done, iteration, finished,
  failed), wherever it runs, and its `RenderResult`;
- `workdir` and `resume`: the work folder beside the output and the stages' saved state, so an
  interrupted render continues exactly;
- `provenance`: the fingerprint kept in the output's metadata (a stale output is known);
- `memory`: whether a frame size fits the device; `threads`: torch's CPU thread count.
"""
