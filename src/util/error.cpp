// Names and exit codes of the library's error kinds.
#include "finepurify/error.hpp"

namespace finepurify {

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidArgument: return "invalid_argument";
    case ErrorKind::Io: return "io";
    case ErrorKind::Internal: return "internal";
    case ErrorKind::StHeaderTooSmall: return "safetensors.header_too_small";
    case ErrorKind::StHeaderTooLarge: return "safetensors.header_too_large";
    case ErrorKind::StInvalidHeaderLength: return "safetensors.invalid_header_length";
    case ErrorKind::StInvalidHeaderStart: return "safetensors.invalid_header_start";
    case ErrorKind::StInvalidHeaderUtf8: return "safetensors.invalid_header_utf8";
    case ErrorKind::StInvalidHeaderJson: return "safetensors.invalid_header_json";
    case ErrorKind::StUnknownDtype: return "safetensors.unknown_dtype";
    case ErrorKind::StDuplicateTensor: return "safetensors.duplicate_tensor";
    case ErrorKind::StInvalidOffsets: return "safetensors.invalid_offsets";
    case ErrorKind::StDataSizeMismatch: return "safetensors.data_size_mismatch";
    case ErrorKind::StMetadataIncompleteBuffer: return "safetensors.metadata_incomplete_buffer";
    case ErrorKind::StOverflow: return "safetensors.overflow";
    case ErrorKind::StTensorNotFound: return "safetensors.tensor_not_found";
    case ErrorKind::ShardIndexInvalid: return "checkpoint.shard_index_invalid";
    case ErrorKind::PickleRefused: return "checkpoint.pickle_refused";
    case ErrorKind::ConfigInvalid: return "config.invalid";
    case ErrorKind::UnsupportedModel: return "config.unsupported_model";
    case ErrorKind::CheckpointMismatch: return "checkpoint.mismatch";
    case ErrorKind::TokenizerInvalid: return "tokenizer.invalid";
    case ErrorKind::DataInvalid: return "data.invalid";
    case ErrorKind::ExperimentConfigInvalid: return "experiment.config_invalid";
    case ErrorKind::StoreModelNotFound: return "store.model_not_found";
    case ErrorKind::StoreNotPinned: return "store.not_pinned";
    case ErrorKind::StoreFetchFailed: return "store.fetch_failed";
    case ErrorKind::StoreChecksumMismatch: return "store.checksum_mismatch";
    case ErrorKind::StoreArchiveInvalid: return "store.archive_invalid";
  }
  return "unknown";
}

int error_exit_code(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidArgument: return 2;
    case ErrorKind::Io: return 3;
    case ErrorKind::Internal: return 70;
    case ErrorKind::ConfigInvalid:
    case ErrorKind::UnsupportedModel: return 5;
    case ErrorKind::TokenizerInvalid: return 6;
    case ErrorKind::DataInvalid: return 7;
    case ErrorKind::ExperimentConfigInvalid: return 2;
    case ErrorKind::StoreModelNotFound:
    case ErrorKind::StoreNotPinned: return 2;
    case ErrorKind::StoreFetchFailed: return 3;
    case ErrorKind::StoreChecksumMismatch:
    case ErrorKind::StoreArchiveInvalid: return 8;
    default: return 4;  // safetensors / checkpoint problems
  }
}

}  // namespace finepurify
