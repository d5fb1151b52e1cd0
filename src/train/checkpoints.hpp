// Checkpoint folders on any file system a training job writes to: a local disk, a PVC, FSx for Lustre, or an object
// store mounted as files (gcsfuse, Mountpoint for S3), where renames are copies or are not possible at all.
//
// One commit rule on every kind of mount: a folder <root>/checkpoint-<step>/ is a checkpoint only when its
// manifest.json, written last after every other file was written and fsynced, lists each file with its size and
// crc32 and every file matches. Where the root can rename directories (probed once per root), the files are written
// into <root>/.checkpoint-<step>.partial/ and the folder renamed into place, so a reader never even sees a partial
// one; where it cannot, they are written in place (an earlier folder of that step loses its manifest first). Older
// checkpoints are removed only after a newer one is complete.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/file.hpp"

namespace llmft::job {

struct CheckpointWrite {
  std::string dir;        // the checkpoint's folder, once complete
  int64_t bytes = 0;      // the files' total size
  double seconds = 0;     // writing, fsyncing and committing them
  bool renamed = false;   // committed by a rename (else written in place)
};

// Writes checkpoint `step` under `root`: `fill(dir, mode)` writes the files into `dir` (flat: no subfolders) with
// `mode` (in place where the root cannot rename); then the manifest, then the commit. Throws Error(kIo) naming the
// path on any failure (a full disk, a read-only folder); a failed write leaves no folder that passes as a checkpoint
// and removes nothing that existed.
CheckpointWrite write_checkpoint(const std::string& root, int64_t step,
                                 const std::function<void(const std::string& dir, WriteMode mode)>& fill);

// Throws Error(kFormat / kNotFound) naming the file unless `dir` holds a manifest.json whose every file is present
// with its size and crc32.
void verify_checkpoint(const std::string& dir);

// The step of a folder named checkpoint-<step>, or -1.
int64_t checkpoint_step(const std::string& dir);

// The newest checkpoint under `root` that verifies. Each newer folder that does not (no manifest, a file cut short or
// changed) and each unfinished .partial folder is reported through `warn`, naming the file, and skipped.
std::optional<std::string> find_latest_checkpoint(const std::string& root,
                                                  const std::function<void(const std::string&)>& warn);

// Keeps the newest `keep` complete checkpoints under `root` (0: all) and removes the rest, and any unfinished
// .partial folder other than in-flight ones of this process.
void prune_checkpoints(const std::string& root, int64_t keep);

// crc32 (zlib's) of a whole file, read in blocks.
uint32_t file_crc32(const std::string& path);

}  // namespace llmft::job
