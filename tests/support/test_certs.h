// Certificates for tests of TLS links, made with the openssl tool: a test CA, an unrelated CA,
// and a server certificate signed by the first for one subject alternative name.
#pragma once

#include <string>

#include "base/result.h"

namespace sbx::testing {

// Writes into `dir`: ca.pem (and ca.key), other-ca.pem, server.pem and server.key, for `san`
// ("IP:127.0.0.1", "DNS:localhost"), valid for two days, EC P-256 keys. kUnavailable when the
// openssl tool is missing (install openssl); kInternal with its output when it fails.
Status MakeTestCertificates(const std::string& dir, const std::string& san = "IP:127.0.0.1");

}  // namespace sbx::testing
