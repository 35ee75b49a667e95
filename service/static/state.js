// The page's state, shared by its modules. The API key lives in `state.key` only:
// never in storage, never in the curl text.

export const state = {
  key: "",          // the API key, in memory only
  model: null,      // GET /model's answer for the default model
  labels: [],       // labels of the model the request goes to
  models: null,     // ready entries of GET /models, when there is a choice
  jobs: false,      // whether the service keeps jobs (GET /jobs answered)
  jobId: null,      // the job the page follows, once POST /jobs answered
  file: null,
  previewUrl: null,
  segmentsTouched: false,
  jobTouched: false,
  topKTouched: false,
  busy: false,
  timer: 0,
  result: null,
};
