#include "masep/kernels/status.hpp"

namespace masep::kernels {

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kInvalidArgument:
      return "invalid argument";
    case Status::kLaunchFailed:
      return "launch failed";
    case Status::kUnsupported:
      return "unsupported";
  }
  return "?";
}

}  // namespace masep::kernels
