//! AdamW with decoupled weight decay, written out because its moments must
//! be saved with checkpoints (candle-nn's AdamW keeps them private), so a
//! resumed run continues exactly where the killed one stopped. The update
//! itself is one in-place pass per weight ([`super::kernels::adamw`]).

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use super::kernels;

pub struct AdamW {
    /// (name, variable), sorted by name so every run updates in one order.
    vars: Vec<(String, Var)>,
    /// Per variable, its first and second moments, one value per element.
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pub step: usize,
    pub learning_rate: f64,
    /// Per variable, a factor on `learning_rate` (1 unless `scale_rates`).
    rate_scales: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(
        mut vars: Vec<(String, Var)>,
        learning_rate: f64,
        weight_decay: f64,
    ) -> Result<AdamW> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| vec![0f32; v.elem_count()];
        let m = vars.iter().map(|(_, v)| zeros(v)).collect();
        let v = vars.iter().map(|(_, v)| zeros(v)).collect();
        Ok(AdamW {
            rate_scales: vec![1.0; vars.len()],
            vars,
            m,
            v,
            step: 0,
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Each variable's learning rate becomes `learning_rate * scale(name)`
    /// (e.g. a pretrained encoder's layers slower than new heads).
    pub fn scale_rates(&mut self, scale: impl Fn(&str) -> f64) {
        self.rate_scales = self.vars.iter().map(|(name, _)| scale(name)).collect();
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0.0;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                total += kernels::adamw::sum_of_squares(g)?;
            }
        }
        Ok(total.sqrt())
    }

    /// One update; gradients are scaled by `grad_scale` first (clipping).
    pub fn step(&mut self, grads: &GradStore, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var) else { continue };
            // No decay on biases and LayerNorm weights, as in BERT.
            let decay = if name.ends_with("bias")
                || name.contains("LayerNorm")
                || name.contains("layer_norm")
                || name.contains("turn_norm")
            {
                0.0
            } else {
                self.weight_decay
            };
            let update = kernels::adamw::Update {
                grad_scale: grad_scale as f32,
                learning_rate: (self.learning_rate * self.rate_scales[i]) as f32,
                weight_decay: decay as f32,
                beta1: b1 as f32,
                beta2: b2 as f32,
                correction1: c1 as f32,
                correction2: c2 as f32,
                eps: self.eps as f32,
            };
            kernels::adamw::step(
                var.as_tensor(),
                grad,
                &mut self.m[i],
                &mut self.v[i],
                update,
            )?;
        }
        Ok(())
    }

    /// Saves the moments (m.NAME, v.NAME) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let device = var.device();
            let m = Tensor::from_slice(&self.m[i], var.shape(), device)?;
            let v = Tensor::from_slice(&self.v[i], var.shape(), device)?;
            tensors.insert(format!("m.{name}"), m);
            tensors.insert(format!("v.{name}"), v);
        }
        candle_core::safetensors::save(&tensors, path)
    }

    pub fn load(&mut self, path: &Path, step: usize) -> anyhow::Result<()> {
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let get = |key: String| -> anyhow::Result<Vec<f32>> {
                let tensor = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("{}: no {key}", path.display()))?;
                anyhow::ensure!(
                    tensor.shape() == var.shape(),
                    "{}: {key} has shape {:?}; the model's {name} has {:?}",
                    path.display(),
                    tensor.dims(),
                    var.dims()
                );
                Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, backprop::GradStore};

    #[test]
    fn scaled_rates_move_each_variable_by_its_own_rate() -> Result<()> {
        let var = |name: &str| -> Result<(String, Var)> {
            Ok((name.to_string(), Var::new(&[1f32, 1.0], &Device::Cpu)?))
        };
        let vars = vec![
            var("heads.intent.bias")?,
            var("roberta.encoder.layer.5.bias")?,
        ];
        let loss = vars
            .iter()
            .map(|(_, v)| v.as_tensor().sum_all())
            .collect::<Result<Vec<_>>>()?;
        let grads: GradStore = (&loss[0] + &loss[1])?.backward()?;
        let mut optimizer = AdamW::new(vars.clone(), 0.1, 0.0)?;
        optimizer.scale_rates(|name| {
            if name.starts_with("roberta.") {
                0.01
            } else {
                1.0
            }
        });
        optimizer.step(&grads, 1.0)?;
        // Adam's first step moves each weight by its rate (gradient sign).
        let moved =
            |i: usize| -> Result<f32> { Ok(1.0 - vars[i].1.as_tensor().to_vec1::<f32>()?[0]) };
        assert!((moved(0)? - 0.1).abs() < 1e-5);
        assert!((moved(1)? - 0.001).abs() < 1e-6);
        Ok(())
    }
}
