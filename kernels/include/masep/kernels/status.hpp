// Status returned by every kernel launcher (launchers never throw; checks sit one layer up).
#pragma once

namespace masep::kernels {

enum class Status { kOk = 0, kInvalidArgument, kLaunchFailed, kUnsupported };
const char* to_string(Status s);

}  // namespace masep::kernels
