// TensorBoard event files written without TensorFlow: a TFRecord file (each record: its length as a little-endian
// uint64, the masked CRC-32C of those 8 bytes, the record, the masked CRC-32C of the record) of Event protocol
// buffers — the first carries file_version "brain.Event:2", each later one a Summary of scalar values (tag,
// simple_value) at a step and wall time. TensorBoard (and its EventAccumulator) reads the folder as a run.
//
// Before its first scalars a writer records a SessionLog START at their step: TensorBoard then drops the points an
// earlier run left in the folder at that step and later (a run started afresh replaces the curves; a run resumed from
// a checkpoint replaces the steps the interrupted run logged after it), while every file stays as it was written.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace llmft::job {

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and a new events.out.tfevents.<seconds>.<host>.<pid>.<n> file in it (a resumed run adds
  // its own file beside the earlier ones; TensorBoard reads them as one run).
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One event holding these scalars at `step`; flushed, so a TensorBoard watching the folder sees it at once.
  void scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step, double wall_time);
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  FILE* file_ = nullptr;
  bool started_ = false;
  std::string path_;
};

}  // namespace llmft::job
