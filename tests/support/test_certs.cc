#include "tests/support/test_certs.h"

#include <stdlib.h>

#include <fstream>
#include <sstream>

namespace sbx::testing {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

Status MakeTestCertificates(const std::string& dir, const std::string& san) {
  if (::system("openssl version >/dev/null 2>&1") != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "the openssl command-line tool is missing (apt-get install openssl)");
  }
  const std::string d = dir + "/";
  std::ofstream(d + "server.ext") << "subjectAltName=" << san << "\n"
                                  << "basicConstraints=critical,CA:FALSE\n"
                                  << "extendedKeyUsage=serverAuth\n";
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string ca_ext =
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign";
  const std::string cn = san.substr(san.find(':') + 1);
  std::ofstream(d + "gen.sh")
      << "set -e; cd " << Quote(d) << "\n"
      << "openssl req -x509" << ec << ca_ext << " -days 2 -subj '/CN=sbx test CA' "
      << "-keyout ca.key -out ca.pem\n"
      << "openssl req -x509" << ec << ca_ext << " -days 2 -subj '/CN=sbx unrelated CA' "
      << "-keyout other-ca.key -out other-ca.pem\n"
      << "openssl req" << ec << " -subj " << Quote("/CN=" + cn)
      << " -keyout server.key -out server.csr\n"
      << "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      << "-extfile server.ext -out server.pem\n";
  const std::string cmd = "sh " + Quote(d + "gen.sh") + " >" + Quote(d + "gen.log") + " 2>&1";
  if (::system(cmd.c_str()) != 0) {
    std::ifstream log(d + "gen.log");
    std::stringstream text;
    text << log.rdbuf();
    return MakeError(ErrorCode::kInternal, "making test certificates:\n{}", text.str());
  }
  return Ok();
}

}  // namespace sbx::testing
