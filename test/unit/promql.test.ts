import { expect, test } from '@jest/globals';
import { metricNames } from './promql.js';

test('metric names are found past functions, matchers, ranges, grouping and variables', () => {
  expect(
    metricNames(
      'histogram_quantile(0.9, sum by (le, overlay) (rate(a_bucket{overlay=~"$overlay",x="y z"}[$__rate_interval])))',
    ),
  ).toEqual(['a_bucket']);
  expect(
    metricNames('(time() - b_seconds > 180) and on (peer) b_seconds > 0 unless c_total offset 5m'),
  ).toEqual(['b_seconds', 'c_total']);
  expect(metricNames('sum(max by (overlay) (d{state="Encrypted"})) / sum(e) * 1e3')).toEqual(['d', 'e']);
  expect(metricNames('f')).toEqual(['f']);
});
