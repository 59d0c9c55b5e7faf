#pragma once

// Writes the Prometheus text exposition format, version 0.0.4: one "# HELP"
// and "# TYPE" line per metric family, then its samples. Label values are
// escaped (backslash, double quote, newline), so peer ids or paths of any
// shape cannot break the output.
//
// Threading: a value; one thread at a time.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zmesh::server::monitor {

class PrometheusText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  enum class Type { kCounter, kGauge, kHistogram };

  static constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

  // Starts a family; its samples follow. A family is declared once.
  void Family(std::string_view name, Type type, std::string_view help);
  // A sample of the current family (`name` may differ for suffixed samples).
  void Sample(std::string_view name, double value, const Labels& labels = {});
  // Family plus one unlabelled sample.
  void Single(std::string_view name, Type type, std::string_view help, double value);

  const std::string& text() const { return out_; }

  static std::string EscapeLabelValue(std::string_view value);
  // Shortest text that reads back as the same double; integers without a
  // fraction; NaN and infinities as Prometheus spells them.
  static std::string FormatValue(double value);

 private:
  std::string out_;
};

}  // namespace zmesh::server::monitor
